// One DOM builder for the page's modules: elements are made with createElement and their text with text nodes
// (textContent): no HTML is ever parsed, so user text can never become markup.

/** A DOM element; children are nodes or plain strings (text nodes). */
export function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") e.className = value;
    else if (key === "text") e.textContent = value;
    else if (key === "dataset") Object.assign(e.dataset, value);
    else if (key.startsWith("on")) e.addEventListener(key.slice(2), value);
    else e.setAttribute(key, value === true ? "" : value);
  }
  e.append(...children);
  return e;
}
