// Flotilla updates dashboard: draw the charts, then keep the numbers fresh by polling the
// /ui/data endpoints (every data-poll seconds, paused while the tab is hidden). No framework.
"use strict";

const STAGE_COLORS = {
  UpdateGranted: "#7aa6e0", Downloading: "#4c86d6", Downloaded: "#2f6cc0", Installed: "#8e6cd1",
  Complete: "#2e9e5b", Error: "#d64545", OnHold: "#d9a23a",
};
const PALETTE = ["#2f6cc0", "#2e9e5b", "#d9a23a", "#8e6cd1", "#d64545", "#3aa7b8", "#7f8c8d",
  "#c0632f", "#5b6fd6", "#9bbb4d", "#b84d8c", "#4d4d4d"];
const charts = {};

function pollSeconds() {
  return Number(document.body.dataset.poll || "3");
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

function every(fn) {
  const tick = async () => {
    if (!document.hidden) {
      try { await fn(); } catch (e) { console.warn(e); }
    }
    setTimeout(tick, pollSeconds() * 1000);
  };
  setTimeout(tick, pollSeconds() * 1000);
}

function drawCharts(data) {
  if (typeof Chart === "undefined") return;
  const vc = document.getElementById("versions-chart");
  if (vc) {
    const labels = data.versions.map((v) => v[0]);
    const values = data.versions.map((v) => v[1]);
    if (charts.versions) {
      charts.versions.data.labels = labels;
      charts.versions.data.datasets[0].data = values;
      charts.versions.update("none");
    } else {
      charts.versions = new Chart(vc, {
        type: "doughnut",
        data: { labels, datasets: [{ data: values, backgroundColor: PALETTE }] },
        options: { animation: false, maintainAspectRatio: false, plugins: { legend: { position: "right" } } },
      });
    }
  }
  const pc = document.getElementById("progress-chart");
  if (pc && data.progress) {
    const p = data.progress;
    // A real time axis: points at their sample times (UTC), so gaps and pauses show as such.
    const times = p.times || p.labels.map((_, i) => i);
    const datasets = Object.keys(STAGE_COLORS).map((s) => ({
      label: s, data: (p.series[s] || []).map((y, i) => ({ x: times[i], y })),
      borderColor: STAGE_COLORS[s], backgroundColor: STAGE_COLORS[s] + "33",
      pointRadius: 0, tension: 0, borderWidth: 2,
    }));
    const span = times.length > 1 ? times[times.length - 1] - times[0] : 0;
    if (charts.progress) {
      charts.progress.data.datasets.forEach((d, i) => { d.data = datasets[i].data; });
      charts.progress.options.scales.x.ticks.callback = (v) => timeLabel(v, span);
      charts.progress.update("none");
    } else {
      charts.progress = new Chart(pc, {
        type: "line",
        data: { datasets },
        options: {
          animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
          plugins: { tooltip: { callbacks: { title: (items) => items.length ? timeLabel(items[0].parsed.x, 0, true) : "" } } },
          scales: {
            x: { type: "linear", title: { display: true, text: "time (UTC)" },
                 ticks: { maxTicksLimit: 8, callback: (v) => timeLabel(v, span) } },
            y: { beginAtZero: true, title: { display: true, text: "instances" } },
          },
        },
      });
    }
    const vt = document.getElementById("versions-time-chart");
    if (vt && p.versions) {
      const vsets = Object.keys(p.versions).map((v, i) => ({
        label: v, data: p.versions[v].map((y, j) => ({ x: times[j], y })),
        borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length] + "55",
        fill: true, pointRadius: 0, tension: 0, borderWidth: 1,
      }));
      if (charts.versionsTime) {
        charts.versionsTime.data.datasets = vsets;
        charts.versionsTime.options.scales.x.ticks.callback = (v) => timeLabel(v, span);
        charts.versionsTime.update("none");
      } else {
        charts.versionsTime = new Chart(vt, {
          type: "line",
          data: { datasets: vsets },
          options: {
            animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
            plugins: { tooltip: { callbacks: { title: (items) => items.length ? timeLabel(items[0].parsed.x, 0, true) : "" } } },
            scales: {
              x: { type: "linear", ticks: { maxTicksLimit: 5, callback: (v) => timeLabel(v, span) } },
              y: { stacked: true, beginAtZero: true, title: { display: true, text: "instances" } },
            },
          },
        });
      }
    }
    const empty = document.getElementById("progress-empty");
    if (empty && p.labels.length > 1) empty.remove();
  }
}

function timeLabel(ms, span, full) {
  const iso = new Date(ms).toISOString();  // UTC, like every time on these pages
  if (full) return iso.slice(0, 19).replace("T", " ");
  if (span > 86400000) return iso.slice(5, 16).replace("T", " ");
  return span < 600000 ? iso.slice(11, 19) : iso.slice(11, 16);
}

function setNumbers(root, values) {
  root.querySelectorAll("[data-k]").forEach((el) => {
    const k = el.dataset.k;
    const v = values[k] === undefined ? 0 : values[k];
    if (el.textContent !== String(v)) {
      el.textContent = String(v);
      el.classList.add("changed");
      setTimeout(() => el.classList.remove("changed"), 1200);
    }
  });
}

function esc(s) {
  const d = document.createElement("span");
  d.textContent = s == null ? "" : String(s);
  return d.innerHTML;
}

function groupPage() {
  const live = document.getElementById("live");
  const blob = document.getElementById("chart-data");
  if (blob) drawCharts(JSON.parse(blob.textContent));
  if (!live) return;
  every(async () => {
    const d = await getJSON(live.dataset.live + location.search);
    const g = d.glance || {};
    setNumbers(live, Object.assign({
      total: d.total, on_target: d.on_target, percent: g.percent + "%",
      rate: g.rate_per_hour + "/h", eta: g.eta,
    }, d.status));
    drawCharts(d);
    const feed = document.getElementById("recent");
    if (feed && d.recent) {
      feed.innerHTML = d.recent.map((a) =>
        `<li><span class="sev sev-${esc(a.severity)}">${esc(a.severity)}</span> <time>${esc(a.at)}</time> ${esc(a.message)}</li>`
      ).join("") || '<li class="empty">Nothing yet.</li>';
    }
  });
}

function appPage() {
  const table = document.getElementById("groups");
  if (!table || !table.dataset.live) return;
  every(async () => {
    const counts = await getJSON(table.dataset.live);
    table.querySelectorAll("tr[data-group]").forEach((tr) => {
      const c = counts[tr.dataset.group] || {};
      const total = Object.values(c).reduce((a, b) => a + b, 0);
      setNumbers(tr, Object.assign({ total }, c));
    });
  });
}

function activityPage() {
  const table = document.getElementById("activity");
  if (!table || !table.dataset.live) return;
  every(async () => {
    const d = await getJSON(table.dataset.live + "?after=" + encodeURIComponent(table.dataset.after));
    if (!d.rows.length) return;
    table.dataset.after = String(d.rows[0].id);
    const body = table.querySelector("tbody");
    const emptyRow = body.querySelector(".empty-row");
    if (emptyRow) emptyRow.remove();
    d.rows.slice().reverse().forEach((a) => {
      const tr = document.createElement("tr");
      tr.className = "new";
      tr.innerHTML = `<td><time>${esc(a.at)}</time></td><td><span class="sev sev-${esc(a.severity)}">${esc(a.severity)}</span></td>` +
        `<td>${esc(a.kind)}</td><td>${a.group_url ? `<a href="${esc(a.group_url)}">${esc(a.group)}</a>` : ""}</td>` +
        `<td>${esc(a.version || "")}</td><td>${esc(a.message)}` +
        (a.machine_id ? ` <a href="/ui/apps/${encodeURIComponent(a.app_id)}/instances/${encodeURIComponent(a.machine_id)}"><code class="mid">${esc(a.machine_id)}</code></a>` : "") +
        "</td>";
      body.insertBefore(tr, body.firstChild);
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  groupPage();
  appPage();
  activityPage();
});
