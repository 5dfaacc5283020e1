// Controls outside the viewport (wide tables scroll inside .scroll boxes) and the page width.
() => {
  const vw = document.documentElement.clientWidth;
  const bad = [];
  for (const el of document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea')) {
    if (el.closest('.scroll')) continue;  // wide tables scroll inside their own box
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.left < -1 || r.right > vw + 1) bad.push((el.id || el.name || el.textContent).trim().slice(0, 40) + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
  }
  return {scroll: document.documentElement.scrollWidth, vw, bad};
}
