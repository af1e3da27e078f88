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
 * - Keeps its place in every stream it receives (relay's README, "History
 *   and resume"): the epoch and, per stream, the last position seen: '*'
 *   (broadcast notifications), '@' (notifications to your user), and each
 *   room (chat and room notifications). The welcome says where a connection
 *   starts in '*', '@' and lobby, your own join where it starts in a room,
 *   and a gap frame where a stream goes on after messages were lost.
 * - Reconnects as a resume: ?epoch=E&since=*:12,@:3,lobby:44,ops:17 lists
 *   the streams it has a place in, and the node joins the listed rooms during
 *   the handshake and sends what was missed, then live messages. So it sends
 *   no join for those rooms; it joins (one frame each) only the rooms joined
 *   with join() that never got a confirmation, and leaves the rooms you left
 *   meanwhile, lobby included (every connection starts in lobby). A frame
 *   at or before its stream's position (a duplicate) is dropped: listeners
 *   never see it; relay.duplicates counts them.
 * - Reports recovery: 'state' 'live' comes with {recovered, missed}:
 *   recovered is null on a fresh connection, true when the node filled every
 *   listed stream, false when it could not fill those in missed ('*', '@' or
 *   room names): what was sent there while away is lost (history no longer
 *   had it, or the node lost its history: a new epoch). Messages a resume
 *   recovers arrive right after the welcome and the own joins, before live
 *   ones, each with meta.from 'resume'.
 * - Hands every server frame to the listeners of its type, and server
 *   error frames to on('error'): they are never swallowed. A refused join
 *   ('forbidden': your token's rooms, the node's guest rooms, or a bad room
 *   token) also drops the room from relay.rooms.
 * - Private rooms: join(room, {token}) presents a room token (a JWT from
 *   your backend granting that room). The handshake of a resume cannot
 *   carry it, so the node refuses such a room in the welcome's forbidden
 *   list; relay.js joins it again with its token (its messages sent while
 *   away are then reported missed). A room refused without a token is
 *   dropped.
 * - who(room) asks who is in a room you are in: a promise of {room, online,
 *   users, truncated}, rejected with the server's error (code not_member...).
 * - Close codes 4000 to 4999 are final (4000: the server API disconnected
 *   you, with its reason): no reconnect; the state becomes 'closed'.
 *
 * Events, with on(type, fn), which returns a function that unsubscribes:
 *   'state'        (state, info) state is 'connecting', 'live' (info: {recovered, missed}),
 *                  'reconnecting' (info: {code, reason, delay, at}) or 'closed' (info: {code, reason})
 *   'welcome'      {user, node, room: 'lobby', online, epoch, seq, recovered?, missed?, forbidden?}:
 *                  live; relay.user and relay.node are set
 *   'join','leave' {user, room, online}; your own join also has seq, your own leave
 *                  a reason when the server API removed you
 *   'presence'     {room, online, joined, left} (rooms too big for join/leave events)
 *   'message'      (m, meta) m: {room, user, data, id, ts, seq}
 *   'notification' (n, meta) n: {data, room?, user?, id, ts, seq}
 *                  meta: {stream, from}: from is 'live', 'resume' (missed while away,
 *                  recovered by a reconnect) or 'last' (a join's {last: N})
 *   'gap'          {stream, epoch, seq}: messages of stream up to seq may be missing
 *                  (the node could not fill a hole from history)
 *   'error'        {code, error, request?, room?}: the server refused a frame (see
 *                  relay's README); request and room say which
 *   'pong'         {}: the answer to ping()
 *   'close'        {code, reason, reconnect}: the server or the network closed the
 *                  socket; reconnect says if a retry follows (close() emits only 'state')
 *   '*'            every server frame (duplicates excepted)
 * Browsers answer the server's WebSocket pings by themselves.
 */
(function (global) {
  'use strict';

  // Close codes after which relay (or the network) invites a reconnect.
  const RETRY_CODES = new Set([1001, 1006, 1011, 1012, 1013]);
  // Room names: 1 to 64 of A-Z a-z 0-9 _ - . : (as the server checks them).
  const ROOM_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
  const MAX_ROOMS = 100;
  const MAX_LAST = 1000;
  const LOBBY = 'lobby';
  // Streams besides rooms: broadcast notifications, and those to your user.
  const ALL = '*';
  const USER = '@';

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
      // Streams: the epoch of the positions, and stream -> last position
      // received. A stream is listed here from its start (welcome, own join)
      // until we leave it.
      this.epoch = null;
      this.positions = new Map();
      this.duplicates = 0; // frames dropped as already seen
      this._replay = new Map(); // stream -> {upTo, from}: fresh frames up to upTo are replayed, not live
      this._last = new Map(); // room -> N asked with join(room, {last: N}), until its join is confirmed
      this._listed = new Set(); // rooms the current connection's resume lists, until their joins arrive
      this._tokens = new Map(); // room -> room token it was joined with
      this._who = new Map(); // room -> [{resolve, reject}] waiting for a who answer
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
     * have joined. Returns true when it was handed to the connection, false,
     * sending nothing, when not live: nothing is queued for later. Resume
     * covers what you receive, not what you send: a message typed while
     * offline could go out long after, and one sent just before a connection
     * broke may or may not have arrived, so resending could post it twice.
     * Chat comes back to its sender: seeing your own message (with its seq)
     * is the proof it was posted, and it then survives your reconnects.
     */
    send(data, room = LOBBY) {
      if (data === undefined) throw new TypeError('relay: send needs data');
      return this._frame({type: 'message', room, data});
    }

    /**
     * Joins room, now if live, else as soon as the connection is. With
     * {last: N} (at most 1000), the node sends the room's last N messages
     * (those its history still has) right after the join confirmation, with
     * meta.from 'last'. After a reconnect the room is resumed, not joined
     * again: its history is not replayed twice.
     */
    join(room, {last = 0, token} = {}) {
      checkRoom(room);
      if (!Number.isInteger(last) || last < 0 || last > MAX_LAST) {
        throw new RangeError(`relay: last must be an integer from 0 to ${MAX_LAST}`);
      }
      if (token !== undefined && (typeof token !== 'string' || token === '')) {
        throw new TypeError('relay: a room token is a non-empty string');
      }
      if (this.rooms.has(room)) return;
      if (this.rooms.size >= MAX_ROOMS) throw new RangeError(`relay: at most ${MAX_ROOMS} rooms`);
      this.rooms.add(room);
      if (last > 0) this._last.set(room, last);
      if (token) this._tokens.set(room, token);
      this._frame(joinFrame(room, last, token));
    }

    /**
     * Asks who is in room, which you must be in. Resolves with {room, online,
     * users, truncated}: the distinct users across the cluster, sorted, at
     * most the node's RELAY_WHO_LIMIT; online counts connections. Rejects
     * with an Error whose code is the server's (not_member, rate_limited, busy,
     * unavailable) or 'offline', or 'timeout' after 10 s.
     */
    who(room) {
      checkRoom(room);
      return new Promise((resolve, reject) => {
        if (!this._frame({type: 'who', room})) {
          reject(relayError('offline', 'not connected'));
          return;
        }
        const waiter = {resolve, reject};
        waiter.timer = setTimeout(() => this._answerWho(room, waiter, null, relayError('timeout', 'no answer within 10 s')), 10000);
        if (!this._who.has(room)) this._who.set(room, []);
        this._who.get(room).push(waiter);
      });
    }

    // _answerWho settles one who() of room: waiter, or the oldest.
    _answerWho(room, waiter, value, err) {
      const list = this._who.get(room);
      if (!list || list.length === 0) return;
      const i = waiter ? list.indexOf(waiter) : 0;
      if (i < 0) return;
      const [w] = list.splice(i, 1);
      if (list.length === 0) this._who.delete(room);
      clearTimeout(w.timer);
      if (err) w.reject(err);
      else w.resolve(value);
    }

    /** Leaves room, now if live; it is not rejoined after a reconnect. */
    leave(room) {
      checkRoom(room);
      if (!this.rooms.delete(room)) return;
      this._forget(room);
      this._tokens.delete(room);
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
      for (const room of [...this._who.keys()]) {
        while (this._who.has(room)) this._answerWho(room, null, null, relayError('offline', 'closed'));
      }
      if (this._ws) {
        this._ws.onclose = this._ws.onmessage = null;
        this._ws.close(1000, 'client closed');
        this._ws = null;
      }
      this._setState('closed', {code: 1000, reason: 'client closed'});
    }

    // _resumeURL returns the URL of the next connection: with the resume
    // query (epoch, and since: the position of '*', '@', lobby if we are in
    // it, then each room we are in that has one) once a welcome gave an
    // epoch. The rooms it lists are the connection's _listed.
    _resumeURL() {
      const u = new URL(this.url);
      this._listed = new Set();
      if (this.epoch === null) return u.href;
      const pairs = [];
      for (const name of [ALL, USER, ...this.rooms]) {
        if (!this.positions.has(name)) continue;
        pairs.push(`${name}:${this.positions.get(name)}`);
        if (name !== ALL && name !== USER && name !== LOBBY) this._listed.add(name);
      }
      u.searchParams.set('epoch', this.epoch);
      u.searchParams.set('since', pairs.join(','));
      return u.href;
    }

    _connect() {
      if (this._closed) return;
      this._setState('connecting', {});
      const url = this._resumeURL();
      const ws = new WebSocket(url);
      let opened = false;
      ws.onopen = () => { opened = true; };
      ws.onmessage = (ev) => this._receive(ev.data);
      ws.onclose = (ev) => {
        if (this._ws !== ws) return;
        this._ws = null;
        this._lost(ev.code, ev.reason, opened, url);
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
      const meta = this._observe(f);
      if (!meta) {
        this.duplicates++;
        return;
      }
      this._emit('*', f);
      if (f.type === 'who') this._answerWho(f.room, null, {room: f.room, online: f.online, users: f.users, truncated: f.truncated});
      if (f.type === 'error') this._refused(f);
      if (f.type === 'system' && f.event === 'leave' && f.reason && f.user === this.user && this.rooms.has(f.room)) {
        // The server API removed us: we are out, and stay out.
        this.rooms.delete(f.room);
        this._forget(f.room);
        this._tokens.delete(f.room);
      }
      if (f.type !== 'system') {
        this._emit(f.type, f, meta);
        return;
      }
      if (f.event === 'welcome') {
        this.user = f.user;
        this.node = f.node;
        this._attempt = 0;
        const resumed = f.recovered !== undefined;
        const missed = (f.missed || []).slice();
        for (const room of f.forbidden || []) {
          // Refused on the resume: a room token's room is joined again
          // with its token (what was sent while away is lost); the others
          // are dropped.
          this._listed.delete(room);
          this._forget(room);
          if (this._tokens.has(room)) missed.push(room);
          else this.rooms.delete(room);
        }
        this._setState('live', {recovered: resumed ? f.recovered && missed.length === 0 : null, missed});
        this._emit('welcome', f);
        this._restoreRooms();
        return;
      }
      this._emit(f.event, f); // join, leave, presence, gap
    }

    // _observe keeps the positions as relay's Go clients do
    // (protocol.Positions.Observe). It returns null for a duplicate, to
    // drop, else the frame's meta: {stream, from}.
    _observe(f) {
      const live = {stream: streamOf(f), from: 'live'};
      if (f.type === 'system' && f.event === 'welcome') {
        const seq = f.seq || {};
        const missed = f.missed || [];
        if (f.recovered === undefined || f.epoch !== this.epoch) {
          // A fresh start, or history was lost: the welcome says where we
          // start; the rooms a resume rejoins get theirs in their joins.
          this.positions = new Map(Object.entries(seq));
          this._replay = new Map();
        } else {
          // A resume: filled streams go on from where we were (the replay
          // of what we missed follows); missed ones start afresh.
          this._replay = new Map();
          for (const [name, at] of Object.entries(seq)) {
            if (!this.positions.has(name) || missed.includes(name)) this.positions.set(name, at);
            else if (at > this.positions.get(name)) this._replay.set(name, {upTo: at, from: 'resume'});
          }
          for (const name of missed) {
            if (this._listed.has(name)) this.positions.delete(name); // its join says where it starts
          }
        }
        this.epoch = f.epoch === undefined ? null : f.epoch;
        return live;
      }
      if (f.type === 'system' && f.event === 'join' && typeof f.seq === 'number') {
        // Our own join: the room's position when we joined.
        if (!this.rooms.has(f.room)) {
          // A room the resume rejoined that we left meanwhile: the leave
          // is on its way.
          this._listed.delete(f.room);
          return live;
        }
        const last = this._last.get(f.room);
        if (last !== undefined) {
          this._last.delete(f.room);
          this.positions.set(f.room, Math.max(0, f.seq - last));
          this._replay.set(f.room, {upTo: f.seq, from: 'last'});
        } else if (!this.positions.has(f.room)) {
          this.positions.set(f.room, f.seq);
        } else if (this._listed.has(f.room) && f.seq > this.positions.get(f.room)) {
          this._replay.set(f.room, {upTo: f.seq, from: 'resume'});
        }
        this._listed.delete(f.room);
        return live;
      }
      if (f.type === 'system' && f.event === 'gap') {
        if (f.epoch !== undefined) this.epoch = f.epoch;
        this.positions.set(f.stream, f.seq);
        this._replay.delete(f.stream);
        return live;
      }
      const name = live.stream;
      if (!name || typeof f.seq !== 'number') return live;
      const last = this.positions.get(name);
      if (last === undefined) return live; // a room we are not (or no longer) in
      if (f.seq <= last) return null;
      this.positions.set(name, f.seq);
      const replay = this._replay.get(name);
      if (replay && f.seq <= replay.upTo) {
        if (f.seq === replay.upTo) this._replay.delete(name);
        return {stream: name, from: replay.from};
      }
      return live;
    }

    _forget(room) {
      this.positions.delete(room);
      this._replay.delete(room);
      this._last.delete(room);
    }

    // _refused handles an error frame that answers one of our frames: a
    // refused join drops the room, a refused who rejects its promise.
    _refused(f) {
      if (f.request === 'join' && f.code === 'forbidden' && f.room && this.rooms.has(f.room)) {
        this.rooms.delete(f.room);
        this._forget(f.room);
        this._tokens.delete(f.room);
      }
      if (f.request === 'who' && f.room) this._answerWho(f.room, null, null, relayError(f.code, f.error));
    }

    // A new connection is in lobby and in the rooms its resume listed:
    // join the others we want, leave what we no longer want.
    _restoreRooms() {
      for (const room of this.rooms) {
        if (room !== LOBBY && !this._listed.has(room)) this._frame(joinFrame(room, this._last.get(room) || 0, this._tokens.get(room)));
      }
      for (const room of this._listed) {
        if (!this.rooms.has(room)) this._frame({type: 'leave', room});
      }
      if (!this.rooms.has(LOBBY)) {
        this._forget(LOBBY);
        this._frame({type: 'leave', room: LOBBY});
      }
    }

    async _lost(code, reason, opened, url) {
      for (const room of [...this._who.keys()]) {
        while (this._who.has(room)) this._answerWho(room, null, null, relayError('offline', 'connection closed'));
      }
      // 4000-4999 (the server API's disconnect among them) are final.
      let retry = RETRY_CODES.has(code);
      if (retry && !opened) {
        // The handshake failed: maybe the node is down (retry), maybe it
        // refused us for good (do not).
        const refused = await this._refusal(url);
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
    async _refusal(url) {
      if (!global.fetch) return null;
      const u = new URL(url);
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

  // streamOf names the stream of a chat or notification frame ('' for
  // frames outside streams): a room's, '@' for one to a user (always you),
  // '*' for a broadcast.
  function streamOf(f) {
    if (f.type === 'message') return f.room || '';
    if (f.type === 'notification') return f.room || (f.user ? USER : ALL);
    return '';
  }

  function joinFrame(room, last, token) {
    const f = {type: 'join', room};
    if (last > 0) f.last = last;
    if (token) f.token = token;
    return f;
  }

  function relayError(code, message) {
    const err = new Error(`relay: ${code}: ${message}`);
    err.code = code;
    return err;
  }

  function checkRoom(room) {
    if (typeof room !== 'string' || !ROOM_NAME.test(room)) {
      throw new TypeError(`relay: bad room name ${JSON.stringify(room)}: 1-64 of A-Z a-z 0-9 _ - . :`);
    }
  }

  global.Relay = Relay;
  if (typeof module === 'object' && module.exports) module.exports = Relay;
})(typeof globalThis !== 'undefined' ? globalThis : this);
