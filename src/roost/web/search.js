// The page's search box (index.html #searchForm) and its results panel (#searchPanel), over GET /api/search
// (docs/protocol.md, section 24). A result's snippet is the server's plain text: it reaches the DOM as text nodes,
// and the matched words are marked with <mark> elements made here from the offsets, never from markup in the text.
// Choosing a result asks the page to open the room at that message (openAt, app.js).

const $ = (id) => document.getElementById(id);

/** The snippet as nodes: text, with each highlighted [start, end) (code points) in a <mark>. */
export function snippetNodes(snippet, highlights) {
  const chars = Array.from(snippet); // offsets count code points, as the server's do
  const nodes = [];
  let at = 0;
  for (const [start, end] of highlights) {
    if (!(Number.isInteger(start) && Number.isInteger(end)) || start < at || end <= start || end > chars.length) continue;
    if (start > at) nodes.push(document.createTextNode(chars.slice(at, start).join("")));
    const mark = document.createElement("mark");
    mark.textContent = chars.slice(start, end).join("");
    nodes.push(mark);
    at = end;
  }
  if (at < chars.length) nodes.push(document.createTextNode(chars.slice(at).join("")));
  return nodes;
}

/**
 * Wire the search box. ``api(method, path)`` is the page's authenticated fetch; ``openAt(room, seq)`` opens a
 * room at a message; ``roomName(room)`` is how the page names a room (#lobby, @bob). Returns {forget, reset}.
 */
export function setupSearch({ api, openAt, roomName }) {
  const form = $("searchForm"), input = $("searchInput"), panel = $("searchPanel"), list = $("searchList");
  const summary = $("searchSummary"), more = $("searchMore");
  let query = "", next = null, gen = 0;

  function close() {
    panel.hidden = true;
  }

  function summarize() {
    const count = list.children.length;
    summary.textContent = count ? `${count}${next === null ? "" : "+"} result${count === 1 ? "" : "s"} for “${query}”` : `No results for “${query}”`;
  }

  function result(r) {
    const when = new Date(r.ts);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "search-hit";
    button.dataset.room = r.room;
    button.dataset.seq = String(r.seq);
    const head = document.createElement("span");
    head.className = "where";
    head.append(`${roomName(r.room)} · ${r.sender} · `);
    const time = document.createElement("time");
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
    head.append(time);
    const text = document.createElement("span");
    text.className = "snippet";
    text.append(...snippetNodes(r.snippet, r.highlights));
    button.append(head, text);
    button.addEventListener("click", () => {
      close();
      openAt(r.room, r.seq);
    });
    const li = document.createElement("li");
    li.append(button);
    return li;
  }

  async function load(append) {
    const mine = ++gen;
    const params = new URLSearchParams({ q: query });
    if (append && next !== null) params.set("before", String(next));
    more.hidden = true;
    if (!append) {
      list.replaceChildren();
      summary.textContent = "Searching…";
    }
    panel.hidden = false;
    try {
      const answer = await api("GET", `/api/search?${params}`);
      if (mine !== gen) return;
      list.append(...answer.results.map(result));
      next = answer.next;
      more.hidden = next === null;
      summarize();
    } catch (error) {
      if (mine !== gen) return;
      summary.textContent = error.code === 4400 ? `Cannot search for that: ${error.message}` : `Search failed: ${error.message}`;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    query = input.value.trim();
    if (!query) { close(); return; }
    next = null;
    load(false);
  });
  more.addEventListener("click", () => load(true));
  $("closeSearch").addEventListener("click", close);
  panel.addEventListener("keydown", (event) => { if (event.key === "Escape") { close(); input.focus(); } });
  input.addEventListener("keydown", (event) => { if (event.key === "Escape") close(); });

  return {
    /** A message was deleted: its result (snippet and all) leaves the list. */
    forget(room, seq) {
      for (const hit of list.querySelectorAll(".search-hit")) {
        if (hit.dataset.room === room && hit.dataset.seq === String(seq)) {
          hit.closest("li").remove();
          summarize();
        }
      }
    },
    reset() {
      gen += 1;
      query = "";
      next = null;
      input.value = "";
      list.replaceChildren();
      close();
    },
  };
}
