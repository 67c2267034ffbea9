// <tidings-inbox api="https://tidings.example.com" token="SUBSCRIBER_TOKEN"></tidings-inbox>
//
// A bell with an unread badge; clicking it opens the inbox list. Clicking a message marks it read
// (which also stops its notification's escalation); "Mark all read" reads every message. Counts
// and the list update live over Server-Sent Events (/v1/inbox/stream). Plain JavaScript, no build:
// load this file with <script type="module" src=".../static/tidings-inbox.js"></script>.
//
// The token is a subscriber token from your backend (POST /v1/subscribers/{id}/token). Set the
// `token` attribute again to renew it (listen for the `tidings-token-expired` event); the stream
// reconnects with the new one.

const STYLE = `
  :host { position: relative; display: inline-block; font: 14px/1.4 system-ui, sans-serif; }
  button.bell { position: relative; font-size: 22px; background: none; border: 0; cursor: pointer; padding: 4px 8px; }
  .badge { position: absolute; top: -2px; right: -2px; min-width: 18px; height: 18px; border-radius: 9px;
           background: #d93025; color: #fff; font-size: 11px; line-height: 18px; text-align: center; padding: 0 4px; }
  .badge[hidden] { display: none; }
  .panel { position: absolute; right: 0; top: 100%; width: 320px; max-height: 420px; overflow: auto; background: #fff;
           border: 1px solid #ddd; border-radius: 8px; box-shadow: 0 4px 16px rgba(0,0,0,.15); z-index: 1000; }
  .panel[hidden] { display: none; }
  header { display: flex; justify-content: space-between; align-items: center; padding: 8px 12px; border-bottom: 1px solid #eee; }
  ul { list-style: none; margin: 0; padding: 0; }
  li { padding: 8px 12px; border-bottom: 1px solid #f2f2f2; cursor: pointer; }
  li.unread { background: #eef4ff; font-weight: 600; }
  li .body { font-weight: normal; color: #555; }
  .empty { padding: 16px 12px; color: #777; }
`;

class TidingsInbox extends HTMLElement {
  static get observedAttributes() { return ["token", "api"]; }

  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    this.shadowRoot.innerHTML = `<style>${STYLE}</style>
      <button class="bell" part="bell" aria-label="Notifications"><svg width="22" height="22" viewBox="0 0 24 24" aria-hidden="true"><path fill="currentColor" d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z"/></svg><span class="badge" part="badge" hidden>0</span></button>
      <div class="panel" part="panel" hidden>
        <header><strong>Notifications</strong><button class="read-all" part="read-all">Mark all read</button></header>
        <ul part="list"></ul>
      </div>`;
    this._badge = this.shadowRoot.querySelector(".badge");
    this._panel = this.shadowRoot.querySelector(".panel");
    this._list = this.shadowRoot.querySelector("ul");
    this.shadowRoot.querySelector(".bell").addEventListener("click", () => this.toggle());
    this.shadowRoot.querySelector(".read-all").addEventListener("click", () => this.readAll());
    this._stream = null;
  }

  get api() { return (this.getAttribute("api") || "").replace(/\/$/, ""); }
  get token() { return this.getAttribute("token") || ""; }

  connectedCallback() { this.connect(); }
  disconnectedCallback() { this.disconnect(); }
  attributeChangedCallback() { if (this.isConnected) this.connect(); }

  disconnect() {
    if (this._stream) { this._stream.close(); this._stream = null; }
  }

  connect() {
    this.disconnect();
    if (!this.token) return;
    const url = `${this.api}/v1/inbox/stream?token=${encodeURIComponent(this.token)}`;
    this._stream = new EventSource(url);
    this._stream.addEventListener("counts", (event) => {
      const counts = JSON.parse(event.data);
      this.showCounts(counts);
      this.refresh();
    });
    // The token expired: the app sets a fresh one (the `token` attribute), which reconnects.
    this._stream.addEventListener("expired", () => {
      this.disconnect();
      this.dispatchEvent(new CustomEvent("tidings-token-expired"));
    });
  }

  async request(method, path) {
    const response = await fetch(`${this.api}${path}`, {
      method, headers: { Authorization: `Bearer ${this.token}` },
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status}`);
    return response.json();
  }

  showCounts(counts) {
    this._badge.textContent = counts.unread > 99 ? "99+" : String(counts.unread);
    this._badge.hidden = counts.unread === 0;
    this.dispatchEvent(new CustomEvent("tidings-counts", { detail: counts }));
  }

  async refresh() {
    const page = await this.request("GET", "/v1/inbox/messages?limit=20");
    this.showCounts(page.counts);
    this._list.replaceChildren(...page.messages.map((m) => this.item(m)));
    if (!page.messages.length) {
      const empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "Nothing here yet";
      this._list.append(empty);
    }
  }

  item(message) {
    const li = document.createElement("li");
    li.dataset.id = message.id;
    li.className = message.read_at ? "read" : "unread";
    li.setAttribute("part", "item");
    const title = document.createElement("div");
    title.textContent = message.title || "";
    const body = document.createElement("div");
    body.className = "body";
    body.textContent = message.body || "";
    li.append(title, body);
    li.addEventListener("click", () => this.read(message));
    return li;
  }

  async read(message) {
    if (!message.read_at) await this.request("POST", `/v1/inbox/messages/${encodeURIComponent(message.id)}/read`);
    await this.refresh();
    this.dispatchEvent(new CustomEvent("tidings-open", { detail: message }));
  }

  async readAll() {
    this.showCounts(await this.request("POST", "/v1/inbox/read-all"));
    await this.refresh();
  }

  async toggle() {
    this._panel.hidden = !this._panel.hidden;
    if (!this._panel.hidden) await this.refresh();
  }
}

customElements.define("tidings-inbox", TidingsInbox);
