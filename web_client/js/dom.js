// Small DOM helpers for the sitting panels (no HTML strings, no inline styles).

/**
 * Create an element: h("button", {class: "button", type: "button", dataset: {action: "x"}, onclick}, "text").
 * Props: class, text, dataset, on<event> handlers, boolean properties (hidden, disabled, checked...),
 * anything else as an attribute. Children: nodes or strings; null/false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (typeof value === "boolean" || name === "value") el[name] = value;
    else el.setAttribute(name, String(value));
  }
  el.append(...children.flat().filter((child) => child != null && child !== false));
  return el;
}

/** Text plus a visually hidden complement for screen readers ("Donner la parole" + " à Alice"). */
export function labelled(visible, hidden) {
  return [visible, hidden ? h("span", { class: "visually-hidden", text: ` ${hidden}` }) : null];
}

/**
 * Replace the children of `container`, keeping the keyboard focus on the element with the
 * same data-focus-key if it had it (the lists are rebuilt on every sitting_state).
 */
export function replaceKeepingFocus(container, nodes) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focusKey : null;
  container.replaceChildren(...nodes);
  if (key) container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`)?.focus();
}

/** Fill a <select> with [{value, label}], keeping the current choice when it still exists. */
export function fillSelect(select, options, placeholder = null) {
  const previous = select.value;
  const nodes = options.map(({ value, label }) => h("option", { value }, label));
  if (placeholder !== null) nodes.unshift(h("option", { value: "" }, placeholder));
  select.replaceChildren(...nodes);
  if (options.some((o) => o.value === previous)) select.value = previous;
}
