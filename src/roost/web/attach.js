// Attachments on the page (docs/protocol.md section 25): the attach button, drag-and-drop and paste upload files to
// the open room at once; the composer lists them until the message is sent with their ids. A message's files are
// shown from the server's records in its rich body: images as thumbnails (a click opens the full image), other files
// as a download link with name and size. Names only ever reach the DOM as text (textContent, alt, title), and the
// images load through signed links the server makes per user (GET .../attachments/{id}/link), since <img src> sends
// no Authorization header.

import { h } from "/dom.js";

const LINK_REFRESH_MS = 8 * 60 * 1000; // links live 10 minutes: ask again before that

/** A size in bytes as people read it. */
export function sizeText(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** The attachments a message carries, as the server listed them (only well-formed entries), or []. */
export function attachmentsOf(m) {
  if (m.kind !== "rich") return [];
  let content;
  try { content = JSON.parse(m.body); } catch { return []; }
  const list = content?.attachments;
  if (!Array.isArray(list)) return [];
  return list.filter((a) => a && typeof a.id === "string" && /^[0-9a-f]{32}$/.test(a.id)
    && typeof a.name === "string" && typeof a.type === "string" && Number.isSafeInteger(a.size));
}

const IMAGE = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

/**
 * `setupAttachments({api, room, composer, dropZone, button, input, list})`: wire the upload controls.
 * `api(method, path)` is the page's authenticated JSON call; `upload(room, file)` posts the bytes.
 * Returns `{pending(room), clear(room), render(m)}`.
 */
export function setupAttachments({ api, upload, room, dropZone, composer, button, input, list, onError }) {
  const pending = new Map(); // room -> [{id, name, type, size}]
  const links = new Map();   // "id@room" -> {promise, at}

  function renderPending() {
    const files = pending.get(room()) ?? [];
    list.replaceChildren(...files.map((f) => h("li", { class: "pending-file", dataset: { id: f.id } },
      h("span", { class: "file-name", text: f.name }),
      h("span", { class: "file-size", text: ` ${sizeText(f.size)}` }),
      h("button", { type: "button", class: "link", "aria-label": `Remove ${f.name}`, text: "✕",
        onclick: () => { pending.set(room(), files.filter((x) => x.id !== f.id)); renderPending(); } }))));
    list.hidden = files.length === 0;
  }

  async function add(fileList) {
    const target = room();
    if (!target) return;
    for (const file of fileList) {
      const row = h("li", { class: "pending-file uploading" }, h("span", { class: "file-name", text: file.name }),
        h("span", { class: "file-size", text: " uploading…" }));
      list.hidden = false;
      list.append(row);
      try {
        const up = await upload(target, file);
        pending.set(target, [...(pending.get(target) ?? []), up]);
      } catch (error) {
        onError(`${file.name}: ${error.message}`);
      } finally {
        row.remove();
      }
      if (room() === target) renderPending();
    }
  }

  button.addEventListener("click", () => input.click());
  input.addEventListener("change", () => { add([...input.files]); input.value = ""; });
  dropZone.addEventListener("dragover", (event) => {
    if ([...(event.dataTransfer?.types ?? [])].includes("Files")) { event.preventDefault(); dropZone.classList.add("dropping"); }
  });
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dropping"));
  dropZone.addEventListener("drop", (event) => {
    dropZone.classList.remove("dropping");
    if (!event.dataTransfer?.files?.length) return;
    event.preventDefault();
    add([...event.dataTransfer.files]);
  });
  composer.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files ?? [])];
    if (files.length) { event.preventDefault(); add(files); }
  });

  function link(roomName, id) {
    const key = `${id}@${roomName}`;
    const known = links.get(key);
    if (known && Date.now() - known.at < LINK_REFRESH_MS) return known.promise;
    const promise = api("GET", `/api/rooms/${encodeURIComponent(roomName)}/attachments/${id}/link`);
    links.set(key, { promise, at: Date.now() });
    promise.catch(() => links.delete(key));
    return promise;
  }

  /** The element showing `m`'s files, or null when it carries none. */
  function render(m) {
    const files = attachmentsOf(m);
    if (!files.length) return null;
    return h("ul", { class: "attachments" }, ...files.map((f) => {
      const item = h("li", { class: IMAGE.has(f.type) ? "attachment image" : "attachment file", dataset: { id: f.id } });
      if (IMAGE.has(f.type)) {
        const img = h("img", { alt: f.name, title: `${f.name} (${sizeText(f.size)})`, loading: "lazy" });
        if (f.width && f.height) { img.width = Math.min(320, f.width); img.height = Math.round(img.width * f.height / f.width); }
        const open = h("a", { class: "open-image", target: "_blank", rel: "noopener noreferrer" }, img);
        item.append(open);
        link(m.room, f.id).then((l) => { img.src = l.thumb ?? l.url; open.href = l.url; }).catch(() => item.classList.add("gone"));
      } else {
        const a = h("a", { class: "download", download: f.name, rel: "noopener noreferrer", text: f.name });
        item.append(a, h("span", { class: "file-size", text: ` ${sizeText(f.size)}` }));
        link(m.room, f.id).then((l) => { a.href = l.url; }).catch(() => item.classList.add("gone"));
      }
      return item;
    }));
  }

  return {
    pending: (roomName) => (pending.get(roomName) ?? []).map((f) => f.id),
    clear: (roomName) => { pending.delete(roomName); renderPending(); },
    refresh: renderPending,
    render,
  };
}
