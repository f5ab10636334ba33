// Lets the app start offline: its own files and the client module are kept
// in a cache and served from it when the network fails (network first, so an
// update shows up at the next online start). API requests are not touched.
const CACHE = 'todo-shell-v1';
const api = new URL(location.href).searchParams.get('api');
const SHELL = ['./', 'index.html', 'app.js', 'style.css', `${api}/client.js`].map((u) => new URL(u, registration.scope).href);

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const url = event.request.url.split(/[?#]/)[0];
  if (event.request.method !== 'GET' || !SHELL.includes(url)) return;
  event.respondWith(
    fetch(event.request)
      .then((res) => {
        if (res.ok) {
          const copy = res.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(url, copy)));
        }
        return res;
      })
      .catch(() => caches.match(url).then((hit) => hit ?? Response.error())),
  );
});
