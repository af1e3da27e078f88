/*
 * relay.js: a small browser client for relay, over the WebSocket API.
 * No dependencies and no build step. Served by every relay node at /relay.js;
 * copy it into your app or load it as a plain script, which defines Relay:
 *
 *   <script src="/relay.js"></script>
 *   <script>
 *     const relay = new Relay('/ws', {name: 'alice'});  // or {token: jwt}
 *     relay.on('message', m => console.log(m.room, m.user, m.data));
 *     relay.on('error', e => console.warn(e.code, e.error));   // server error frames
 *     relay.on('state', (state, info) => console.log(state, info));
 *     relay.join('ops');
 *     relay.on('welcome', () => relay.send({deploy: 'v2'}, 'ops'));
 *   </script>
 *
 * What it does:
 * - Connects to url (default '/ws' on this page's host; http(s) URLs become
 *   ws(s)). options.token goes in ?token= (relay with RELAY_JWT_SECRET),
 *   otherwise options.name in ?name=.
 * - When the server closes with a code that invites it (1001 going away,
 *   1006 connection lost, 1011 server error, 1012 service restart, 1013 try
 *   again later), reconnects after a jittered exponential backoff: the n-th
 *   retry waits between half and all of min(maxDelay, minDelay * 2^n).
 *   A handshake the server refused (401 bad or expired token, 400 bad
 *   name) is not retried: the browser hides the HTTP status of a refused
 *   WebSocket handshake, so the client asks for it with one plain GET of the
 *   same URL, and closes with that status and the server's error text.
 *   (That GET carries no Origin, so a 403 for the page's origin looks like
 *   an outage and is retried.)
 * - Remembers the rooms joined with join() and left with leave(), and after
 *   each reconnect restores them: it joins them again, and leaves lobby if
 *   you had left it (every connection starts in lobby). That is a frame per
 *   room, all at once: past the server's rate limit burst (RELAY_RATE_LIMIT
 *   x 2, 40 by default) the rest are refused with rate_limited errors.
 * - Hands every server frame to the listeners of its type, and server
 *   error frames to on('error'): they are never swallowed.
 *
 * Events, with on(type, fn), which returns a function that unsubscribes:
 *   'state'        (state, info) state is 'connecting', 'live', 'reconnecting'
 *                  (info: {code, reason, delay, at}) or 'closed' (info: {code, reason})
 *   'welcome'      {user, node, room: 'lobby', online}: live; relay.user and relay.node are set
 *   'join','leave' {user, room, online}
 *   'presence'     {room, online, joined, left} (rooms too big for join/leave events)
 *   'message'      {room, user, data, id, ts}
 *   'notification' {data, room?, user?, id, ts}
 *   'error'        {code, error}: the server refused a frame (see relay's README)
 *   'pong'         {}: the answer to ping()
 *   'close'        {code, reason, reconnect}: the server or the network closed the
 *                  socket; reconnect says if a retry follows (close() emits only 'state')
 *   '*'            every server frame
 * Browsers answer the server's WebSocket pings by themselves.
 */
(function (global) {
  'use strict';

  // Close codes after which relay (or the network) invites a reconnect.
  const RETRY_CODES = new Set([1001, 1006, 1011, 1012, 1013]);
  // Room names: 1 to 64 of A-Z a-z 0-9 _ - . : (as the server checks them).
  const ROOM_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
  const MAX_ROOMS = 100;
  const LOBBY = 'lobby';

  class Relay {
    /**
     * @param {string} [url] WebSocket URL, absolute or relative to the page; default '/ws'.
     * @param {object} [options]
     * @param {string} [options.token]    JWT, sent as ?token=
     * @param {string} [options.name]     name for ?name= when there is no token
     * @param {number} [options.minDelay] first reconnect delay ceiling in ms (default 500)
     * @param {number} [options.maxDelay] largest reconnect delay in ms (default 30000)
     */
    constructor(url, options = {}) {
      this.url = Relay.url(url || '/ws', options);
      this.minDelay = options.minDelay || 500;
      this.maxDelay = options.maxDelay || 30000;
      this.state = 'connecting';
      this.user = null; // from the welcome
      this.node = null; // the node this connection is served by
      this.rooms = new Set([LOBBY]); // the rooms we want to be in
      this._listeners = new Map();
      this._ws = null;
      this._timer = null;
      this._attempt = 0; // reconnects since the last welcome
      this._closed = false;
      // Listeners added right after the constructor still see the first state.
      Promise.resolve().then(() => this._connect());
    }

    /** Returns the WebSocket URL for base (relative to the page) with the token or name. */
    static url(base, {token, name} = {}) {
      const u = new URL(base, global.location ? global.location.href : undefined);
      if (u.protocol === 'http:') u.protocol = 'ws:';
      if (u.protocol === 'https:') u.protocol = 'wss:';
      if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`relay: not a WebSocket URL: ${u.href}`);
      if (token) u.searchParams.set('token', token);
      else if (name) u.searchParams.set('name', name);
      return u.href;
    }

    /** Calls fn for each event of type; returns a function that removes it. */
    on(type, fn) {
      if (!this._listeners.has(type)) this._listeners.set(type, new Set());
      this._listeners.get(type).add(fn);
      return () => this._listeners.get(type).delete(fn);
    }

    /**
     * Sends chat data (any JSON value) to room (default lobby), which you must
     * have joined. Returns false, sending nothing, when not live: relay keeps
     * no history, so nothing is queued for later.
     */
    send(data, room = LOBBY) {
      if (data === undefined) throw new TypeError('relay: send needs data');
      return this._frame({type: 'message', room, data});
    }

    /** Joins room, now if live, else as soon as the connection is. */
    join(room) {
      checkRoom(room);
      if (this.rooms.has(room)) return;
      if (this.rooms.size >= MAX_ROOMS) throw new RangeError(`relay: at most ${MAX_ROOMS} rooms`);
      this.rooms.add(room);
      this._frame({type: 'join', room});
    }

    /** Leaves room, now if live; it is not rejoined after a reconnect. */
    leave(room) {
      checkRoom(room);
      if (!this.rooms.delete(room)) return;
      this._frame({type: 'leave', room});
    }

    /** Asks the server for a {type:'pong'}. Returns false when not live. */
    ping() {
      return this._frame({type: 'ping'});
    }

    /** Closes the connection for good: no reconnect. */
    close() {
      if (this._closed) return;
      this._closed = true;
      clearTimeout(this._timer);
      if (this._ws) {
        this._ws.onclose = this._ws.onmessage = null;
        this._ws.close(1000, 'client closed');
        this._ws = null;
      }
      this._setState('closed', {code: 1000, reason: 'client closed'});
    }

    _connect() {
      if (this._closed) return;
      this._setState('connecting', {});
      const ws = new WebSocket(this.url);
      let opened = false;
      ws.onopen = () => { opened = true; };
      ws.onmessage = (ev) => this._receive(ev.data);
      ws.onclose = (ev) => {
        if (this._ws !== ws) return;
        this._ws = null;
        this._lost(ev.code, ev.reason, opened);
      };
      this._ws = ws;
    }

    _receive(text) {
      let f;
      try {
        f = JSON.parse(text);
      } catch (_) {
        this._emit('error', {code: 'bad_frame', error: 'the server sent a frame that is not JSON'});
        return;
      }
      this._emit('*', f);
      if (f.type !== 'system') {
        this._emit(f.type, f);
        return;
      }
      if (f.event === 'welcome') {
        this.user = f.user;
        this.node = f.node;
        this._attempt = 0;
        this._setState('live', {});
        this._emit('welcome', f);
        this._restoreRooms();
        return;
      }
      this._emit(f.event, f); // join, leave, presence
    }

    // A new connection is in lobby only: bring it to the rooms we want.
    _restoreRooms() {
      for (const room of this.rooms) {
        if (room !== LOBBY) this._frame({type: 'join', room});
      }
      if (!this.rooms.has(LOBBY)) this._frame({type: 'leave', room: LOBBY});
    }

    async _lost(code, reason, opened) {
      let retry = RETRY_CODES.has(code);
      if (retry && !opened) {
        // The handshake failed: maybe the node is down (retry), maybe it
        // refused us for good (do not).
        const refused = await this._refusal();
        if (this._closed) return;
        if (refused) {
          retry = false;
          reason = `HTTP ${refused.status}: ${refused.error}`;
        }
      }
      if (!retry) {
        this._closed = true;
        this._emit('close', {code, reason, reconnect: false});
        this._setState('closed', {code, reason});
        return;
      }
      const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** this._attempt++);
      const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
      this._emit('close', {code, reason, reconnect: true});
      this._setState('reconnecting', {code, reason, delay, at: Date.now() + delay});
      this._timer = setTimeout(() => this._connect(), delay);
    }

    // Asks the WebSocket URL over plain HTTP why the handshake failed. A
    // 4xx other than 426 (Upgrade Required: it would have accepted) is a
    // refusal; a network error or a cross-origin answer we cannot read is not.
    async _refusal() {
      if (!global.fetch) return null;
      const u = new URL(this.url);
      u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
      try {
        const res = await fetch(u, {cache: 'no-store', credentials: 'omit'});
        if (res.status < 400 || res.status >= 500 || res.status === 426 || res.status === 429) return null;
        let error = res.statusText;
        try {
          error = (await res.json()).error || error;
        } catch (_) { /* not JSON */ }
        return {status: res.status, error};
      } catch (_) {
        return null;
      }
    }

    _frame(obj) {
      if (this.state !== 'live' || !this._ws) return false;
      this._ws.send(JSON.stringify(obj));
      return true;
    }

    _setState(state, info) {
      this.state = state;
      this._emit('state', state, info);
    }

    _emit(type, ...args) {
      const fns = this._listeners.get(type);
      if (!fns) return;
      for (const fn of [...fns]) {
        try {
          fn(...args);
        } catch (err) {
          // One broken listener must not stop the others or the client.
          setTimeout(() => { throw err; });
        }
      }
    }
  }

  function checkRoom(room) {
    if (typeof room !== 'string' || !ROOM_NAME.test(room)) {
      throw new TypeError(`relay: bad room name ${JSON.stringify(room)}: 1-64 of A-Z a-z 0-9 _ - . :`);
    }
  }

  global.Relay = Relay;
  if (typeof module === 'object' && module.exports) module.exports = Relay;
})(typeof globalThis !== 'undefined' ? globalThis : this);
