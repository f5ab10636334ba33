// Entry point: a CGI request when started by a web server, the command line otherwise.
if (process.env.GATEWAY_INTERFACE) {
  import('./cgi.ts').then((cgi) => cgi.runCgi());
} else {
  import('./cli.ts').then((cli) => cli.main(process.argv.slice(2))).then((code) => {
    process.exitCode = code;
  });
}
