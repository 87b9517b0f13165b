/* The 短信 panel: the SMS the emulated gateway (emulator/sms.py) took, newest first, as the
 * candidate's phone would show them. Loaded after chat.js; uses window.emu.addPanel and the chat
 * stream's 'sms' events (window.emu.onStream), and reloads /_emu/sms when the stream (re)opens.
 * Every page sees every SMS: the emulator does not know which WeChat user owns which number.
 */
(function () {
  'use strict';

  var SHOWN = 20;
  var emu = window.emu;
  if (!emu) return;

  var panel = emu.addPanel('panel-sms', '短信');
  var list = document.createElement('ol');
  list.className = 'sms-list';
  list.id = 'sms-list';
  var empty = document.createElement('p');
  empty.className = 'muted sms-empty';
  empty.textContent = '暂无短信。绑定或修改手机号时，验证码短信会出现在这里。';
  var row = document.createElement('div');
  row.className = 'row';
  var count = document.createElement('span');
  count.className = 'state';
  count.id = 'sms-count';
  var clear = document.createElement('button');
  clear.type = 'button';
  clear.className = 'plain';
  clear.id = 'sms-clear';
  clear.textContent = '清空';
  row.appendChild(count);
  row.appendChild(clear);
  panel.appendChild(list);
  panel.appendChild(empty);
  panel.appendChild(row);

  var seen = new Map(); // sms id -> <li>

  var timeFmt = new Intl.DateTimeFormat('zh-CN', {
    timeZone: 'Asia/Shanghai', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
  });

  function maskMobile(m) {
    m = String(m || '');
    return m.length < 8 ? m.replace(/./g, '*') : m.slice(0, 3) + '*'.repeat(m.length - 7) + m.slice(-4);
  }

  function textNode(text) {
    // The text with the verification code (4-8 digits) set off, as phones highlight it.
    var p = document.createElement('p');
    p.className = 'sms-text';
    var re = /\d{4,8}/g;
    var last = 0;
    var m;
    while ((m = re.exec(text)) !== null) {
      p.appendChild(document.createTextNode(text.slice(last, m.index)));
      var code = document.createElement('b');
      code.className = 'sms-code';
      code.textContent = m[0];
      p.appendChild(code);
      last = m.index + m[0].length;
    }
    p.appendChild(document.createTextNode(text.slice(last)));
    return p;
  }

  function render(sms) {
    var li = document.createElement('li');
    li.className = 'sms';
    li.dataset.id = sms.id;
    li.dataset.at = String(sms.at);
    var head = document.createElement('div');
    head.className = 'sms-head';
    var to = document.createElement('span');
    to.className = 'sms-to';
    to.textContent = sms.masked || maskMobile(sms.mobile);
    var at = document.createElement('time');
    at.className = 'sms-at';
    at.textContent = timeFmt.format(new Date(sms.at * 1000));
    head.appendChild(to);
    head.appendChild(at);
    li.appendChild(head);
    li.appendChild(textNode(String(sms.text || '')));
    return li;
  }

  function refresh() {
    // Newest first by time; only the latest SHOWN stay.
    var items = Array.prototype.slice.call(list.children);
    items.sort(function (a, b) { return Number(b.dataset.at) - Number(a.dataset.at); });
    items.forEach(function (li, i) {
      if (i < SHOWN) {
        list.appendChild(li);
      } else {
        seen.delete(li.dataset.id);
        li.remove();
      }
    });
    empty.hidden = list.children.length > 0;
    count.textContent = list.children.length ? '共 ' + list.children.length + ' 条' : '';
  }

  function show(sms) {
    if (!sms || !sms.id || seen.has(sms.id)) return;
    var li = render(sms);
    seen.set(sms.id, li);
    list.insertBefore(li, list.firstChild);
    refresh();
  }

  function reset() {
    seen.clear();
    list.innerHTML = '';
    refresh();
  }

  function load() {
    return fetch('/_emu/sms?limit=' + SHOWN, { cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : { messages: [] }; })
      .then(function (data) {
        // The gateway's list is the truth (it may have been cleared meanwhile).
        reset();
        data.messages.slice().reverse().forEach(show);
        panel.dataset.loaded = '1';
      })
      .catch(function (e) { console.error('SMS panel', e); });
  }

  clear.addEventListener('click', function () {
    fetch('/_emu/sms', { method: 'DELETE' }).then(reset);
  });

  refresh();
  emu.onStream('sms', show);
  emu.onStream('open', load); // first connect, and whatever arrived while disconnected
})();
