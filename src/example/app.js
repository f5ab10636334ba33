// A shared to-do list that works offline, with photos: the whole app state is
// one Apie event stream, and the list on screen is a projection of it. Every
// change is an event appended at once (shown as "not synced yet" until the
// server has it); the client syncs it whenever it can, and everybody's
// changes arrive live.

const apiUrl = new URL(document.querySelector('meta[name="apie-url"]').content, location.href).href.replace(/\/$/, '');
// The client comes from the app's own Apie, so the two always match.
const { Apie } = await import(`${apiUrl}/client.js`);

// ---- the model: events in, list out ----------------------------------------

// todo-added {title} · todo-done {id, done} · todo-photo {id, photo} · todo-removed {id}.
// An item's id is the eventId of the event that added it. Pending events have
// no hash yet: the items they touch are marked as not synced.
function reduce(items, event) {
  const { eventType, body } = event;
  const pending = !event.hash;
  const update = (changes) => items.map((item) => (item.id === body.id ? { ...item, ...changes, pending: pending || item.pending } : item));
  switch (eventType) {
    case 'todo-added':
      return [...items, { id: event.eventId, title: body.title, done: false, photo: null, by: event.createdBy, pending }];
    case 'todo-done':
      return update({ done: body.done });
    case 'todo-photo':
      return update({ photo: body.photo });
    case 'todo-removed':
      return items.filter((item) => item.id !== body.id);
    default:
      return items;
  }
}

// ---- signing in: the password is exchanged for a token, which is kept -----

const SESSION = 'todo-session';
const $ = (id) => document.getElementById(id);

function savedSession() {
  const session = JSON.parse(localStorage.getItem(SESSION) ?? 'null');
  return session && Date.parse(session.expiresAt) > Date.now() ? session : null;
}

$('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const user = form.get('user');
  try {
    const { token, expiresAt } = await new Apie({ url: apiUrl, user, password: form.get('password') }).login();
    localStorage.setItem(SESSION, JSON.stringify({ user, token, expiresAt }));
    location.reload();
  } catch (err) {
    $('login-error').textContent = err.status === 401 ? 'Wrong user name or password.' : 'Cannot reach the server to log in.';
  }
});

$('logout').addEventListener('click', () => {
  // Changes not synced yet stay on this device, for when this user logs in again.
  localStorage.removeItem(SESSION);
  location.reload();
});

// ---- the list ----------------------------------------------------------------

let apie;
const photos = new Map(); // hash → Promise of an object URL

function el(tag, { dataset = {}, ...props } = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  Object.assign(node.dataset, dataset);
  node.append(...children.filter((c) => c !== null));
  return node;
}

function photoUrl(hash) {
  if (!photos.has(hash)) {
    const url = apie.download(hash).then((blob) => URL.createObjectURL(blob));
    url.catch(() => photos.delete(hash)); // offline: try again at the next render
    photos.set(hash, url);
  }
  return photos.get(hash);
}

function render(items) {
  $('items').replaceChildren(...items.map((item) => {
    const photo = item.photo ? el('img', { className: 'photo', alt: `photo of ${item.title}` }) : null;
    if (photo) photoUrl(item.photo).then((url) => (photo.src = url), () => {});
    const attach = el('input', { type: 'file', accept: 'image/*', onchange: (e) => attachPhoto(item, e.target.files[0]) });
    return el('li', { className: `${item.done ? 'done' : ''} ${item.pending ? 'pending' : ''}`, dataset: { id: item.id } },
      el('input', { type: 'checkbox', checked: item.done, title: 'done', onchange: (e) => change('todo-done', { id: item.id, done: e.target.checked }) }),
      el('span', { className: 'title', textContent: item.title }),
      el('span', { className: 'actions' },
        el('label', { title: 'attach a photo' }, 'Photo', attach),
        el('button', { type: 'button', title: 'remove', textContent: '✕', onclick: () => change('todo-removed', { id: item.id }) })),
      el('span', { className: 'by', textContent: item.by ?? 'you, on this device' }),
      photo);
  }));
  showStatus();
}

async function showStatus() {
  const waiting = (await apie.pending('default')).length;
  const online = navigator.onLine;
  document.body.dataset.pending = String(waiting);
  document.body.dataset.online = String(online);
  $('status').textContent = `${online ? 'online' : 'offline'}${waiting ? ` · ${waiting} change${waiting > 1 ? 's' : ''} not synced yet` : ''}`;
}

function change(eventType, body) {
  // Queued on this device at once; sent whenever the server can be reached.
  apie.append('default', { eventType, body });
}

async function attachPhoto(item, file) {
  if (!file) return;
  try {
    const { hash } = await apie.upload(file, { name: file.name, contentType: file.type });
    change('todo-photo', { id: item.id, photo: hash });
  } catch {
    $('notice').textContent = 'Photos need a connection: try again when online.';
  }
}

function start(session) {
  apie = new Apie({
    url: apiUrl,
    user: session.user,
    token: session.token,
    onError: (err) => {
      if (err.status === 401) {
        localStorage.removeItem(SESSION);
        $('notice').textContent = 'Your session has ended: log in again (changes not synced yet are kept).';
      } else {
        $('notice').textContent = err.message;
      }
    },
  });
  // `cache`: the list as of the last sync is kept on this device, so it shows
  // (with the changes not synced yet) even when the app starts offline.
  apie.projection('default', reduce, [], { cache: 'todo-v1', onChange: render });
  $('add').addEventListener('submit', (event) => {
    event.preventDefault();
    const title = $('title').value.trim();
    if (title) change('todo-added', { title });
    $('title').value = '';
  });
  addEventListener('online', showStatus);
  addEventListener('offline', showStatus);
  $('main').hidden = false;
  $('logout').hidden = false;
}

const session = savedSession();
if (session) start(session);
else $('login').hidden = false;
if ('serviceWorker' in navigator) navigator.serviceWorker.register(`sw.js?api=${encodeURIComponent(apiUrl)}`).catch(() => {});
