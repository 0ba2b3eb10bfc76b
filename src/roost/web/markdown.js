// markdown.js: the small, safe markdown subset of the chat page. Messages are user text: this module
// never produces markup from strings. `parse(text)` returns a plain tree (strings for text, arrays
// `[tag, {attrs}?, ...children]` for elements), and `toDom(tree)` builds it with createElement,
// createTextNode and setAttribute only, refusing any element or attribute outside ALLOWED and any link
// that `safeHref` does not accept. tests/vectors/markdown.json holds the parser to its cases (under Node)
// and the page's rendering to the same trees (in chromium).
//
// The subset (docs/web.md): **bold**, *italic* (or _italic_ between words), `code`, ``` fenced code blocks ```,
// > quotes, - / * / + bullet lists, 1. numbered lists, [label](https://url) links and bare http(s) URLs
// made links. Only http:, https: and mailto: links exist; anything else (javascript:, data:, vbscript:,
// relative or protocol-relative URLs, URLs with credentials or control characters) stays text. A
// backslash before punctuation keeps it literal. Blank lines separate paragraphs; single newlines stay.
//
// Sans-I/O and linear in the text (closers that do not exist are remembered), with nesting capped.

/** Elements the renderer may create, with the attributes each may carry (a's rel, target and title are set by toDom). */
export const ALLOWED = Object.freeze({
  p: [], strong: [], em: [], code: [], pre: [], blockquote: [], ul: [], ol: ["start"], li: [], a: ["href"],
});
export const LINK_REL = "noopener noreferrer";
export const MAX_INLINE_DEPTH = 4; // **_`x`_** and the like; deeper markers stay text
export const MAX_QUOTE_DEPTH = 3; // > > > quote; deeper ">" stay text
export const MAX_URL_LENGTH = 2048;

const SCHEMES = ["http:", "https:", "mailto:"];
// C0/C1 controls, spaces, and the invisible or direction-changing characters that make a link lie about itself.
const UNSAFE_URL_CHARS = /[\u0000-\u0020\u007f-\u00a0\u00ad\u200b-\u200f\u2028-\u202f\u2060-\u2069\ufeff]/u;

/** The normalised href for an http(s) or mailto URL written in full, or null (then the text stays text). */
export function safeHref(url) {
  if (typeof url !== "string" || url.length === 0 || url.length > MAX_URL_LENGTH) return null;
  if (UNSAFE_URL_CHARS.test(url) || url.includes("\\")) return null;
  if (!/^(?:https?:\/\/[^/]|mailto:[^/])/i.test(url)) return null;
  let parsed;
  try { parsed = new URL(url); } catch { return null; }
  if (!SCHEMES.includes(parsed.protocol)) return null;
  if (parsed.username || parsed.password) return null; // https://bank.example@evil.example
  if (parsed.protocol !== "mailto:" && !parsed.hostname) return null;
  return parsed.href;
}

// ---- blocks ---------------------------------------------------------------------------------

const FENCE_OPEN = /^ {0,3}(`{3,})[^`]*$/;
const QUOTE = /^ {0,3}> ?/;
const BULLET = /^ {0,3}([-*+])[ \t]+(.*)$/;
const NUMBER = /^ {0,3}(\d{1,9})[.)][ \t]+(.*)$/;
const BLANK = /^[ \t]*$/;
const CONTINUATION = /^(?: {2,}|\t)(?=\S)/;

/** The tree of `text`: a list of block elements (p, pre, blockquote, ul, ol). */
export function parse(text) {
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  return blocks(lines, 0);
}

function blocks(lines, depth) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK.test(line)) { i += 1; continue; }
    const fence = FENCE_OPEN.exec(line);
    if (fence) {
      const close = new RegExp(`^ {0,3}\`{${fence[1].length},}[ \\t]*$`);
      const body = [];
      i += 1;
      while (i < lines.length && !close.test(lines[i])) body.push(lines[i++]);
      i += 1; // the closing fence (or the end of the message)
      const code = body.join("\n");
      out.push(["pre", code ? ["code", code] : ["code"]]);
      continue;
    }
    if (depth < MAX_QUOTE_DEPTH && QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && QUOTE.test(lines[i])) inner.push(lines[i++].replace(QUOTE, ""));
      out.push(["blockquote", ...blocks(inner, depth + 1)]);
      continue;
    }
    const list = listAt(lines, i);
    if (list) { out.push(list.node); i = list.next; continue; }
    const para = [line];
    i += 1;
    while (i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines[i], depth)) para.push(lines[i++]);
    out.push(["p", ...inline(para.join("\n"), 0, false)]);
  }
  return out;
}

/** Whether `line` ends a paragraph: a fence, a quote, a bullet, or a numbered list that starts at 1. */
function startsBlock(line, depth) {
  if (FENCE_OPEN.test(line) || (depth < MAX_QUOTE_DEPTH && QUOTE.test(line)) || BULLET.test(line)) return true;
  const n = NUMBER.exec(line);
  return n !== null && Number(n[1]) === 1;
}

function listAt(lines, start) {
  const first = BULLET.exec(lines[start]) ?? NUMBER.exec(lines[start]);
  if (!first) return null;
  const ordered = !BULLET.test(lines[start]);
  const pattern = ordered ? NUMBER : BULLET;
  const items = [];
  let i = start;
  while (i < lines.length) {
    const m = pattern.exec(lines[i]);
    if (m) { items.push(m[2]); i += 1; continue; }
    if (CONTINUATION.test(lines[i]) && !BULLET.test(lines[i]) && !NUMBER.test(lines[i])) {
      items[items.length - 1] += `\n${lines[i].trim()}`;
      i += 1;
      continue;
    }
    break;
  }
  const lis = items.map((item) => ["li", ...inline(item, 0, false)]);
  const number = Number(first[1]);
  const node = ordered && number !== 1 ? ["ol", { start: String(number) }, ...lis] : [ordered ? "ol" : "ul", ...lis];
  return { node, next: i };
}

// ---- inline ---------------------------------------------------------------------------------

const ESCAPABLE = /[!-/:-@[-`{-~]/; // ASCII punctuation
const WORD = /[\p{L}\p{N}]/u;
const AUTOLINK = /https?:\/\/[^\s<>"]+/iy;
const TRAILING = /[.,;:!?'"*_~]/;

/** Inline nodes of `text`: strings merged, elements for code, links, emphasis. */
function inline(text, depth, inLink) {
  const out = [];
  let buf = "";
  const flush = () => { if (buf) { out.push(buf); buf = ""; } };
  // Closers searched for and not found (none after any later position either), and the next "]" at or
  // after the last "[" looked at (Infinity: none left): what keeps the scan linear.
  const memo = { none: new Set(), close: -1 };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length && ESCAPABLE.test(text[i + 1])) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      const n = runLength(text, i, "`");
      const end = memo.none.has(`\`${n}`) ? -1 : findRun(text, i + n, "`", n);
      if (end < 0) { memo.none.add(`\`${n}`); buf += text.slice(i, i + n); i += n; continue; }
      let code = text.slice(i + n, end);
      if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ") && code.trim()) code = code.slice(1, -1);
      flush();
      out.push(["code", code]);
      i = end + n;
      continue;
    }
    if (c === "[" && !inLink) {
      const link = linkAt(text, i, depth, memo);
      if (link && typeof link.node === "string") { buf += link.node; i = link.next; continue; } // refused URL: text
      if (link) { flush(); out.push(link.node); i = link.next; continue; }
    }
    if ((c === "h" || c === "H") && !inLink && (i === 0 || !WORD.test(text[i - 1]))) {
      const auto = autolinkAt(text, i);
      if (auto) { flush(); out.push(auto.node); i = auto.next; continue; }
    }
    if (c === "*" || c === "_") {
      const n = runLength(text, i, c);
      const em = depth < MAX_INLINE_DEPTH ? emphasisAt(text, i, c, n, depth, inLink, memo) : null;
      if (em) { flush(); out.push(em.node); i = em.next; continue; }
      buf += text.slice(i, i + n);
      i += n;
      continue;
    }
    buf += c;
    i += 1;
  }
  flush();
  return out;
}

function runLength(text, i, c) {
  let n = 0;
  while (text[i + n] === c) n += 1;
  return n;
}

/** The start of the next run of exactly `n` `c`s at or after `from`, or -1. */
function findRun(text, from, c, n) {
  let k = text.indexOf(c.repeat(n), from);
  while (k >= 0) {
    const len = runLength(text, k, c);
    if (len === n) return k;
    k = text.indexOf(c.repeat(n), k + len);
  }
  return -1;
}

/** `[label](url)` at `i`: a link, or literal text (its whole source) when the URL is not safe; null if no link syntax. */
function linkAt(text, i, depth, memo) {
  if (!(memo.close >= i)) memo.close = text.indexOf("]", i + 1); // shared by every "[" before it
  const close = memo.close;
  if (close < 0) { memo.close = Infinity; return null; }
  if (close === Infinity || close === i + 1 || text[close + 1] !== "(") return null;
  if (text.lastIndexOf("[", close) !== i) return null; // another "[" is nearer: that one may be the link
  const end = text.indexOf(")", close + 2);
  if (end < 0) return null;
  const url = text.slice(close + 2, end);
  if (/\s/.test(url)) return null;
  const href = safeHref(url);
  if (href === null) return { node: text.slice(i, end + 1), next: end + 1 };
  return { node: ["a", { href }, ...inline(text.slice(i + 1, close), depth + 1, true)], next: end + 1 };
}

/** A bare http(s) URL at `i`, without trailing punctuation or an unbalanced ")". */
function autolinkAt(text, i) {
  AUTOLINK.lastIndex = i;
  const m = AUTOLINK.exec(text);
  if (!m) return null;
  let url = m[0];
  for (;;) {
    const last = url[url.length - 1];
    if (TRAILING.test(last)) url = url.slice(0, -1);
    else if (last === ")" && count(url, "(") < count(url, ")")) url = url.slice(0, -1);
    else if (last === "]" && count(url, "[") < count(url, "]")) url = url.slice(0, -1);
    else break;
  }
  const href = safeHref(url);
  if (href === null) return null;
  return { node: ["a", { href }, url], next: i + url.length };
}

function count(s, c) {
  let n = 0;
  for (const ch of s) if (ch === c) n += 1;
  return n;
}

/** `*x*`, `**x**`, `***x***` or `_x_` at `i`, closed by the first same marker not preceded by a space. */
function emphasisAt(text, i, c, n, depth, inLink, memo) {
  if (n > 3 || (c === "_" && n > 1)) return null; // __init__ stays as it is: bold is **
  const after = text[i + n];
  if (after === undefined || /\s/.test(after)) return null;
  if (c === "_" && i > 0 && WORD.test(text[i - 1])) return null; // snake_case_names stay as they are
  const key = c + n;
  if (memo.none.has(key)) return null;
  let k = findRun(text, i + n + 1, c, n);
  while (k >= 0 && (/\s/.test(text[k - 1]) || (c === "_" && k + n < text.length && WORD.test(text[k + n])))) {
    k = findRun(text, k + n, c, n);
  }
  if (k < 0) { memo.none.add(key); return null; }
  const inner = inline(text.slice(i + n, k), depth + 1, inLink);
  const node = n === 1 ? ["em", ...inner] : n === 2 ? ["strong", ...inner] : ["strong", ["em", ...inner]];
  return { node, next: k + n };
}

// ---- DOM ------------------------------------------------------------------------------------

const isAttrs = (x) => x !== null && typeof x === "object" && !Array.isArray(x);

/** A DocumentFragment of `tree`, built node by node; throws on anything outside ALLOWED or an unsafe href. */
export function toDom(tree, doc = globalThis.document) {
  const fragment = doc.createDocumentFragment();
  for (const node of tree) fragment.append(build(node, doc));
  return fragment;
}

function build(node, doc) {
  if (typeof node === "string") return doc.createTextNode(node);
  const [tag, ...rest] = node;
  if (!Object.prototype.hasOwnProperty.call(ALLOWED, tag)) throw new Error(`markdown: element ${tag} is not allowed`);
  const element = doc.createElement(tag);
  const attrs = rest.length && isAttrs(rest[0]) ? rest.shift() : {};
  for (const [name, value] of Object.entries(attrs)) {
    if (!ALLOWED[tag].includes(name)) throw new Error(`markdown: attribute ${name} of ${tag} is not allowed`);
    if (name === "href") {
      const href = safeHref(value);
      if (href === null) throw new Error("markdown: unsafe href");
      element.setAttribute("href", href);
      element.setAttribute("title", href); // where it goes, whatever the label says
      element.setAttribute("rel", LINK_REL);
      element.setAttribute("target", "_blank");
    } else if (name === "start") {
      element.setAttribute("start", String(Number.parseInt(value, 10) || 1));
    }
  }
  for (const child of rest) element.append(build(child, doc));
  return element;
}

/** `text` as DOM nodes of the subset. */
export function render(text, doc = globalThis.document) {
  return toDom(parse(text), doc);
}
