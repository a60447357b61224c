'use strict';
// Puts a room's replies and events back in mediasoup v2's order.
//
// Tureen sends the events a request causes BEFORE its reply (docs/control-api.md, "Events"),
// while v2 first applies the request (creates the Producer, the Peer) and then tells the other
// peers (newConsumer, newPeer). The client numbers every frame it reads (`framesRead`); the
// sequencer keeps a room's events and replies by that position and runs, for each request:
//   pre(data)  right after the moment the request was sent, before the events it caused;
//   the events it caused (and any other event of the room), in arrival order;
//   post()     at the position of its reply (v2's events for the request, then the promise).
// An item cannot run while a request sent before it is still unanswered (it may be one of
// that request's events). After a `post` the rest waits for the next macrotask, so the code
// awaiting that promise (e.g. attaching 'notify' to a peer that just joined) runs first, as
// it would in v2 where later events come from later network reads.

class Sequencer {
  /** `client`: the TureenClient; `handleEvent(event)`: applies one event of the room. */
  constructor(client, handleEvent) {
    this._client = client;
    this._handleEvent = handleEvent;
    this._items = []; // {key, run} sorted by key
    this._outstanding = new Set(); // {sent}
    this._lastReply = 0;
    this._scheduled = false;
    this._pausedUntilTick = false;
  }

  /** An event of the room was read just now. */
  event(event) {
    this._insert({ key: this._client.framesRead, run: () => this._handleEvent(event) });
    this._pump();
  }

  /**
   * Send one control request; `pre(data)` and `post(data)` run in v2's order (see above); the
   * promise settles with post's result, or rejects with the request's error (`onError` may
   * map it).
   */
  request(method, params, { pre = () => undefined, post = (data) => data, timeout } = {}) {
    return new Promise((resolve, reject) => {
      const entry = { sent: this._client.framesRead };
      this._outstanding.add(entry);
      const settle = (position, ok, value) => {
        this._outstanding.delete(entry);
        if (ok) {
          this._insert({ key: Math.max(entry.sent, this._lastReply) + 0.25, run: () => pre(value) });
        }
        this._lastReply = Math.max(this._lastReply, position);
        this._insert({
          key: position - 0.5,
          post: true,
          run: () => {
            if (!ok) {
              reject(value);
              return;
            }
            try {
              resolve(post(value));
            } catch (err) {
              reject(err);
            }
          },
        });
        this._pump();
      };
      this._client.request(method, params, { withPosition: true, timeout }).then(
        ({ data, position }) => settle(position, true, data),
        (err) => settle(err.position === undefined ? this._client.framesRead + 0.75 : err.position, false, err),
      );
    });
  }

  _insert(item) {
    let at = this._items.length;
    while (at > 0 && this._items[at - 1].key > item.key) at -= 1;
    this._items.splice(at, 0, item);
  }

  _blocked(item) {
    for (const entry of this._outstanding) {
      if (entry.sent < item.key) return true;
    }
    return false;
  }

  _pump() {
    if (this._pausedUntilTick) return;
    while (this._items.length > 0 && !this._blocked(this._items[0])) {
      const item = this._items.shift();
      item.run();
      if (item.post && this._items.length > 0) {
        this._pausedUntilTick = true;
        setImmediate(() => {
          this._pausedUntilTick = false;
          this._pump();
        });
        return;
      }
    }
  }
}

module.exports = { Sequencer };
