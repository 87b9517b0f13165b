/* The emulator's phone chat page. Plain JavaScript, no libraries (the machine has no internet).
 *
 * The openid is per tab (?openid=...). What the user does is posted to /_emu/chat/...; the answer
 * carries the entries to show (the user's own message, the account's passive reply or WeChat's
 * error line). Pushed customer-service and template messages, and menu changes, arrive on the
 * Server-Sent Events stream. Every entry has an id: showing one twice updates it in place.
 *
 * Other panels (an SMS inbox, ...) use window.emu: addPanel(id, title), openid, onEntry(fn),
 * and onStream(type, fn) for their own event types on the stream.
 */
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  var state = {
    openid: params.get('openid') || '',
    config: null,
    menu: null,
    subscribed: null,
    view: 'menu',           // 'menu' or 'keyboard' when a menu exists
    picEvent: null,         // a menu photo button waiting for its file
    entries: new Map(),     // entry id -> element
    pending: new Map(),     // client id -> element
    listeners: [],
    stream: null,           // the EventSource, once connected
    streamHandlers: [],     // [type, fn] from window.emu.onStream
  };
  var messages = $('messages');

  // ---- time, shown in Shanghai time as the candidates read it ---------------------------

  var partsFmt = new Intl.DateTimeFormat('en-US', {
    timeZone: 'Asia/Shanghai', year: 'numeric', month: 'numeric', day: 'numeric',
    hour: '2-digit', minute: '2-digit', hour12: false,
  });

  function parts(date) {
    var out = {};
    partsFmt.formatToParts(date).forEach(function (p) { out[p.type] = p.value; });
    if (out.hour === '24') out.hour = '00';
    return out;
  }

  function timeLabel(at) {
    var p = parts(new Date(at * 1000));
    var now = parts(new Date());
    var hm = p.hour + ':' + p.minute;
    if (p.year === now.year && p.month === now.month && p.day === now.day) return hm;
    if (p.year === now.year) return p.month + '月' + p.day + '日 ' + hm;
    return p.year + '年' + p.month + '月' + p.day + '日 ' + hm;
  }

  function tickClock() {
    var p = parts(new Date());
    $('clock').textContent = p.hour + ':' + p.minute;
  }

  // ---- HTTP ---------------------------------------------------------------------------------

  function getJSON(url) {
    return fetch(url, { cache: 'no-store' }).then(checked);
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    }).then(checked);
  }

  function checked(resp) {
    return resp.json().catch(function () { return {}; }).then(function (data) {
      if (!resp.ok) {
        var err = new Error(data.error || ('HTTP ' + resp.status));
        err.status = resp.status;
        throw err;
      }
      return data;
    });
  }

  var clientSeq = 0;
  function clientId() {
    clientSeq += 1;
    return 'c' + Date.now().toString(36) + '-' + clientSeq;
  }

  function newOpenid() {
    var abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    var bytes = new Uint8Array(27);
    crypto.getRandomValues(bytes);
    var s = 'o';
    bytes.forEach(function (b) { s += abc[b % 64]; });
    return s;
  }

  // ---- rendering entries -----------------------------------------------------------------

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function avatar(side) {
    var a = el('div', 'avatar ' + side);
    if (side === 'account') {
      a.textContent = '自考';
    } else {
      a.innerHTML = '<svg viewBox="0 0 40 40" width="40" height="40"><circle cx="20" cy="15" r="7.5" fill="#fff"/>' +
        '<path d="M6 38c1.5-8 7-12.5 14-12.5S32.5 30 34 38z" fill="#fff"/></svg>';
    }
    return a;
  }

  function mediaUrl(mediaId) {
    return '/_emu/chat/media/' + encodeURIComponent(mediaId);
  }

  function picture(src) {
    var img = el('img', 'picture');
    img.alt = '图片';
    img.src = src;
    img.addEventListener('load', scrollDown);
    return img;
  }

  function templateCard(entry) {
    var card = el('div', 'card template');
    var head = el('div', 'card-head');
    head.appendChild(el('div', 'card-title', entry.title || '模板消息'));
    head.appendChild(el('div', 'card-date', timeLabel(entry.at)));
    card.appendChild(head);
    var rows = el('dl', 'rows');
    (entry.rows || []).forEach(function (r) {
      rows.appendChild(el('dt', null, r.label));
      rows.appendChild(el('dd', null, r.value));
    });
    card.appendChild(rows);
    if (entry.status && entry.status !== 'success') {
      card.appendChild(el('div', 'card-status', '未送达：' + entry.status));
    }
    var foot = el(entry.url ? 'a' : 'div', 'card-foot', '详情');
    if (entry.url) { foot.href = entry.url; foot.target = '_blank'; foot.rel = 'noopener'; }
    card.appendChild(foot);
    return card;
  }

  function newsCard(entry) {
    var card = el('div', 'card news');
    (entry.articles || []).forEach(function (a) {
      var item = el(a.Url ? 'a' : 'div', 'news-item');
      if (a.Url) { item.href = a.Url; item.target = '_blank'; item.rel = 'noopener'; }
      item.appendChild(el('div', 'news-title', a.Title));
      if (a.Description) item.appendChild(el('div', 'news-desc', a.Description));
      card.appendChild(item);
    });
    return card;
  }

  // A text message may hold <a href="...">label</a> links (WeChat shows them as links and opens
  // them in its in-app browser); everything else is plain text, never HTML.
  var LINK = /<a\s+href=(["'])(.*?)\1\s*>(.*?)<\/a>/g;

  function unescapeHtml(s) {
    var t = document.createElement('textarea');
    t.innerHTML = s;
    return t.value;
  }

  // Bare addresses in a text message are links too (a payment page, for one), opened the same way.
  function plainWithLinks(bubble, text) {
    String(text || '').split(/(https?:\/\/[^\s，。“”<>]+)/).forEach(function (part, i) {
      if (i % 2 === 1) {
        var a = el('a', 'link', part);
        a.href = part;
        a.addEventListener('click', function (ev) { ev.preventDefault(); openWebView(this.href); });
        bubble.appendChild(a);
      } else if (part) {
        bubble.appendChild(document.createTextNode(part));
      }
    });
  }

  function textBubble(text) {
    var bubble = el('div', 'bubble');
    var s = text || '', last = 0, m;
    LINK.lastIndex = 0;
    while ((m = LINK.exec(s)) !== null) {
      plainWithLinks(bubble, s.slice(last, m.index));
      var href = unescapeHtml(m[2]);
      var a = el('a', 'link', unescapeHtml(m[3]));
      if (/^https?:\/\//.test(href)) {
        a.href = href;
        a.addEventListener('click', function (ev) { ev.preventDefault(); openWebView(this.href); });
      }
      bubble.appendChild(a);
      last = LINK.lastIndex;
    }
    plainWithLinks(bubble, s.slice(last));
    return bubble;
  }

  // ---- the in-app browser: links open in a web view inside the phone -----------------------
  // Through /_emu/webview, which tells the emulated WeChat who this browser belongs to, so that
  // web authorisation (/connect/oauth2/authorize) knows the openid, as in WeChat.

  function openWebView(url) {
    var view = $('webview');
    $('webview-title').textContent = '';
    $('webview-frame').src = '/_emu/webview?openid=' + encodeURIComponent(state.openid) +
      '&url=' + encodeURIComponent(url);
    view.hidden = false;
  }

  function closeWebView() {
    $('webview').hidden = true;
    $('webview-frame').src = 'about:blank';
  }

  function render(entry, localPreview) {
    if (entry.side === 'system') {
      var n = el('div', 'notice' + (entry.type === 'error' ? ' error' : ''));
      n.appendChild(el('span', null, entry.content));
      if (entry.detail) n.title = entry.detail;
      return n;
    }
    var row = el('div', 'msg ' + entry.side);
    row.appendChild(avatar(entry.side));
    var body = el('div', 'body');
    var content;
    if (entry.type === 'image') {
      content = picture(localPreview || mediaUrl(entry.media_id));
    } else if (entry.type === 'template') {
      content = templateCard(entry);
    } else if (entry.type === 'news') {
      content = newsCard(entry);
    } else {
      content = textBubble(entry.content);
    }
    body.appendChild(content);
    row.appendChild(body);
    return row;
  }

  function place(node, id) {
    // Keep entries in id order; pending ones (no id yet) stay at the bottom.
    node.dataset.id = id === undefined ? '' : String(id);
    if (id !== undefined) {
      var kids = messages.children;
      for (var i = 0; i < kids.length; i++) {
        var k = kids[i];
        if (k.classList.contains('time')) continue;
        if (k.dataset.id === '' || Number(k.dataset.id) > id) {
          messages.insertBefore(node, k);
          return;
        }
      }
    }
    messages.appendChild(node);
  }

  function showEntry(entry) {
    var json = JSON.stringify(entry);
    var known = state.entries.get(entry.id);
    if (known && known.dataset.json === json) return; // already shown as it is
    var node = render(entry);
    node.dataset.json = json;
    node.dataset.at = String(entry.at);
    var old = state.entries.get(entry.id);
    if (!old && entry.client_id && state.pending.has(entry.client_id)) {
      old = state.pending.get(entry.client_id);
      state.pending.delete(entry.client_id);
      if (entry.type === 'image') {
        // keep the local preview until the stored photo has loaded
        var img = node.querySelector('img');
        var prev = old.querySelector('img');
        if (img && prev) img.src = prev.src;
        var real = new Image();
        real.onload = function () { if (img) img.src = mediaUrl(entry.media_id); };
        real.src = mediaUrl(entry.media_id);
      }
    }
    if (old) old.remove();
    state.entries.set(entry.id, node);
    place(node, entry.id);
    relabel();
    scrollDown();
    state.listeners.forEach(function (fn) { try { fn(entry); } catch (e) { console.error(e); } });
  }

  function showPending(entry, localPreview) {
    var node = render(entry, localPreview);
    node.classList.add('pending');
    node.dataset.at = String(Date.now() / 1000);
    node.querySelector('.body').appendChild(el('div', 'spinner'));
    state.pending.set(entry.client_id, node);
    place(node);
    relabel();
    scrollDown();
    return node;
  }

  function markFailed(cid, message) {
    var node = state.pending.get(cid);
    if (!node) return;
    var spin = node.querySelector('.spinner');
    var mark = el('div', 'failed', '!');
    mark.title = message;
    if (spin) spin.replaceWith(mark);
    state.pending.delete(cid);
  }

  function relabel() {
    // A time label before the first message and after a pause of 5 minutes, as WeChat does.
    Array.prototype.slice.call(messages.querySelectorAll('.time')).forEach(function (t) { t.remove(); });
    var last = null;
    Array.prototype.slice.call(messages.children).forEach(function (node) {
      var at = Number(node.dataset.at);
      if (!at) return;
      if (last === null || at - last >= 300) {
        messages.insertBefore(el('div', 'time', timeLabel(at)), node);
      }
      last = at;
    });
  }

  function scrollDown() {
    messages.scrollTop = messages.scrollHeight;
  }

  // ---- answers and the wire panel --------------------------------------------------------

  function handleAnswer(answer) {
    (answer.entries || []).forEach(showEntry);
    if (answer.deliveries && answer.deliveries.length) showWire(answer.deliveries[answer.deliveries.length - 1]);
    if (answer.subscribed !== undefined) setSubscribed(answer.subscribed);
  }

  function showWire(d) {
    $('wire-type').textContent = d.msg_type + (d.msg_id ? ' #' + d.msg_id : '');
    $('wire-attempts').textContent = String(d.attempts);
    $('wire-statuses').textContent = d.statuses.map(function (s, i) {
      return s === null ? d.outcomes[i] : String(s);
    }).join(', ');
    $('wire-latency').textContent = Math.round(d.latency * 1000) + ' ms';
    var detail = d.error ? d.detail : (d.reply ? '被动回复：' + d.reply.type + (d.reply.encrypted ? '（加密）' : '') : '无被动回复');
    $('wire-detail').textContent = detail;
    $('wire-detail').classList.toggle('bad', !!d.error);
  }

  // ---- sending --------------------------------------------------------------------------

  function sendText() {
    var box = $('text');
    var text = box.value;
    if (!text.trim()) return;
    box.value = '';
    autosize();
    var cid = clientId();
    showPending({ side: 'user', type: 'text', content: text, client_id: cid });
    postJSON('/_emu/chat/text', { openid: state.openid, text: text, client_id: cid })
      .then(handleAnswer)
      .catch(function (e) { markFailed(cid, e.message); });
  }

  function sendPhoto(file, picEvent) {
    var cid = clientId();
    var preview = URL.createObjectURL(file);
    showPending({ side: 'user', type: 'image', client_id: cid }, preview);
    var form = new FormData();
    form.append('openid', state.openid);
    form.append('client_id', cid);
    if (picEvent) {
      form.append('event', picEvent.event);
      form.append('key', picEvent.key);
    }
    form.append('file', file, file.name || 'photo.jpg');
    fetch('/_emu/chat/photo', { method: 'POST', body: form })
      .then(checked)
      .then(handleAnswer)
      .catch(function (e) { markFailed(cid, e.message); });
  }

  function sendEvent(event, key) {
    return postJSON('/_emu/chat/event', { openid: state.openid, event: event, key: key })
      .then(handleAnswer)
      .catch(function (e) { showWire({ msg_type: 'event', attempts: 0, statuses: [], outcomes: [], latency: 0, error: true, detail: e.message }); });
  }

  function toggleSubscribe(want) {
    return postJSON('/_emu/chat/subscribe', { openid: state.openid, subscribed: want })
      .then(handleAnswer)
      .catch(function (e) { alert('操作失败：' + e.message); });
  }

  // ---- the custom menu ------------------------------------------------------------------

  function closeSubmenu() {
    $('submenu').hidden = true;
    Array.prototype.slice.call(document.querySelectorAll('.menu-top.open')).forEach(function (b) {
      b.classList.remove('open');
    });
  }

  function pressButton(b) {
    closeSubmenu();
    var type = b.type;
    if (type === 'view') {
      openWebView(b.url);
      sendEvent('VIEW', b.url);
    } else if (type === 'pic_sysphoto' || type === 'pic_photo_or_album' || type === 'pic_weixin') {
      state.picEvent = { event: type, key: b.key };
      $('photo-input').click();
    } else if (b.key !== undefined) {
      // click, and the other key buttons (scancode_*, location_select) as their events
      sendEvent(type === 'click' ? 'CLICK' : type, b.key);
    }
  }

  function openSubmenu(top, button) {
    var box = $('submenu');
    if (!box.hidden && top.classList.contains('open')) { closeSubmenu(); return; }
    closeSubmenu();
    box.innerHTML = '';
    button.sub_button.forEach(function (sub) {
      var item = el('button', 'menu-sub', sub.name);
      item.type = 'button';
      item.addEventListener('click', function () { pressButton(sub); });
      box.appendChild(item);
    });
    box.hidden = false;
    top.classList.add('open');
    var composer = $('composer').getBoundingClientRect();
    var r = top.getBoundingClientRect();
    var width = Math.max(r.width - 12, box.offsetWidth);
    box.style.minWidth = (r.width - 12) + 'px';
    var left = r.left - composer.left + r.width / 2 - width / 2;
    left = Math.max(6, Math.min(left, composer.width - width - 6));
    box.style.left = left + 'px';
    var arrowX = r.left - composer.left + r.width / 2 - left;
    box.style.setProperty('--arrow-x', arrowX + 'px');
  }

  function renderMenu(menu) {
    state.menu = menu && menu.button && menu.button.length ? menu : null;
    var nav = $('menu-buttons');
    nav.innerHTML = '';
    closeSubmenu();
    if (state.menu) {
      state.menu.button.forEach(function (b) {
        var top = el('button', 'menu-top');
        top.type = 'button';
        if (b.sub_button && b.sub_button.length) {
          top.appendChild(el('span', 'has-sub'));
          top.appendChild(document.createTextNode(b.name));
          top.addEventListener('click', function (ev) { ev.stopPropagation(); openSubmenu(top, b); });
        } else {
          top.textContent = b.name;
          top.addEventListener('click', function () { pressButton(b); });
        }
        nav.appendChild(top);
      });
    }
    updateComposer();
  }

  function updateComposer() {
    var following = state.subscribed === true;
    $('follow-bar').hidden = following;
    $('menu-bar').hidden = !following || !state.menu || state.view !== 'menu';
    $('input-bar').hidden = following ? !!state.menu && state.view === 'menu' : true;
    $('to-menu').hidden = !state.menu;
    $('input-bar').classList.toggle('no-menu', !state.menu);
  }

  function setSubscribed(value) {
    state.subscribed = value;
    var label = $('sub-state');
    label.textContent = value === true ? '已关注' : '未关注';
    label.classList.toggle('on', value === true);
    $('sub-toggle').textContent = value === true ? '取消关注' : '关注';
    updateComposer();
  }

  // ---- users ----------------------------------------------------------------------------

  function switchUser(openid) {
    var p = new URLSearchParams(location.search);
    p.set('openid', openid);
    location.search = p.toString();
  }

  function loadUsers() {
    return getJSON('/_emu/chat/users').then(function (data) {
      var sel = $('user-select');
      sel.innerHTML = '';
      var ids = data.openids.slice();
      if (ids.indexOf(state.openid) < 0) ids.push(state.openid);
      ids.forEach(function (id) {
        var o = el('option', null, id + (id === state.config.default_openid ? '（演示）' : ''));
        o.value = id;
        o.selected = id === state.openid;
        sel.appendChild(o);
      });
    });
  }

  // ---- live stream ------------------------------------------------------------------------

  function loadHistory() {
    return getJSON('/_emu/chat/history?openid=' + encodeURIComponent(state.openid)).then(function (data) {
      data.entries.forEach(function (e) { if (!state.entries.has(e.id)) showEntry(e); });
      setSubscribed(data.subscribed);
    });
  }

  function connect() {
    var es = new EventSource('/_emu/chat/stream?openid=' + encodeURIComponent(state.openid));
    es.addEventListener('entry', function (ev) { showEntry(JSON.parse(ev.data)); });
    es.addEventListener('menu', function (ev) { renderMenu(JSON.parse(ev.data).menu); });
    es.addEventListener('open', function () {
      document.body.dataset.stream = 'open';
      loadHistory(); // whatever arrived while disconnected
    });
    es.addEventListener('error', function () { document.body.dataset.stream = 'closed'; });
    state.stream = es;
    state.streamHandlers.forEach(function (h) { listenStream(h[0], h[1]); });
  }

  function listenStream(type, fn) {
    // Other panels' event types (the SMS panel's 'sms'), and 'open' to reload after a reconnect.
    state.stream.addEventListener(type, function (ev) {
      try { fn(ev.data !== undefined ? JSON.parse(ev.data) : null); } catch (e) { console.error(e); }
    });
  }

  // ---- the panel API for other scripts ---------------------------------------------------

  window.emu = {
    get openid() { return state.openid; },
    addPanel: function (id, title) {
      var existing = document.getElementById(id);
      if (existing) return existing;
      var panel = el('section', 'panel');
      panel.id = id;
      panel.appendChild(el('h2', null, title));
      $('side-panels').appendChild(panel);
      return panel;
    },
    onEntry: function (fn) { state.listeners.push(fn); },
    onStream: function (type, fn) {
      state.streamHandlers.push([type, fn]);
      if (state.stream) listenStream(type, fn);
    },
  };

  // ---- wiring ---------------------------------------------------------------------------

  function autosize() {
    var box = $('text');
    box.style.height = '40px';
    box.style.height = Math.min(box.scrollHeight, 110) + 'px';
  }

  function wire() {
    $('send-btn').addEventListener('click', sendText);
    $('text').addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); sendText(); }
    });
    $('text').addEventListener('input', autosize);
    $('photo-btn').addEventListener('click', function () { state.picEvent = null; $('photo-input').click(); });
    $('photo-input').addEventListener('change', function () {
      var input = $('photo-input');
      if (input.files && input.files[0]) sendPhoto(input.files[0], state.picEvent);
      state.picEvent = null;
      input.value = '';
    });
    $('to-keyboard').addEventListener('click', function () {
      state.view = 'keyboard'; closeSubmenu(); updateComposer(); $('text').focus();
    });
    $('to-menu').addEventListener('click', function () { state.view = 'menu'; updateComposer(); });
    $('follow-btn').addEventListener('click', function () { toggleSubscribe(true); });
    $('webview-close').addEventListener('click', closeWebView);
    $('webview-frame').addEventListener('load', function () {
      try { $('webview-title').textContent = $('webview-frame').contentDocument.title || ''; } catch (e) { /* cross-origin */ }
    });
    $('sub-toggle').addEventListener('click', function () { toggleSubscribe(state.subscribed !== true); });
    $('user-select').addEventListener('change', function () { switchUser($('user-select').value); });
    $('user-new').addEventListener('click', function () { switchUser(newOpenid()); });
    document.addEventListener('click', function (ev) {
      if (!$('submenu').hidden && !$('submenu').contains(ev.target)) closeSubmenu();
    });
  }

  function start() {
    tickClock();
    setInterval(tickClock, 10000);
    wire();
    getJSON('/_emu/chat/config').then(function (config) {
      state.config = config;
      if (!state.openid) {
        state.openid = config.default_openid;
        params.set('openid', state.openid);
        history.replaceState(null, '', location.pathname + '?' + params.toString());
      }
      $('account-name').textContent = config.account_name;
      document.title = config.account_name + ' · 微信模拟器';
      $('mode-line').textContent = '模式 ' + config.mode + ' · ' + config.account_id + ' → ' + config.bot_url;
      renderMenu(config.menu);
      return Promise.all([loadUsers(), loadHistory()]);
    }).then(function () {
      connect();
      document.body.dataset.ready = '1';
    }).catch(function (e) {
      messages.appendChild(el('div', 'notice error', '模拟器无法加载：' + e.message));
    });
  }

  start();
})();
