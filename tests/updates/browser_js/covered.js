// Whether a control, scrolled into view, is the topmost element at its centre (not covered).
(el) => {
  el.scrollIntoView({block: 'center'});
  const r = el.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return hit === el || el.contains(hit) || (hit && hit.closest('label') && hit.closest('label').contains(el));
}
