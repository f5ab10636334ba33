// The version string, injected by the bundler from package.json.
declare const APIE_VERSION: string;

export const VERSION: string = typeof APIE_VERSION === 'string' ? APIE_VERSION : 'dev';
