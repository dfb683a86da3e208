// Analytics page: fetches /analytics/data.json and draws each series with uPlot into
// its <figure>. Sizes follow the figure's width (phones included) and are redrawn when
// the window is resized. A figure with no data says so in text.
"use strict";
(() => {
  const colours = ["#0a5cc2", "#b42318", "#14532d", "#8a6d00"];
  const charts = [];

  const width = (figure) => Math.max(260, figure.clientWidth - 32);

  const empty = (figure) => {
    const p = document.createElement("p");
    p.textContent = "No data yet.";
    figure.appendChild(p);
  };

  // One chart: x values, named series, and options for bars or time axes.
  const draw = (id, x, series, { bars = false, time = true, labels = null, unit = "" } = {}) => {
    const figure = document.getElementById(id);
    if (!figure) return;
    if (!x.length) return empty(figure);
    const bar = bars && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 60] }) : undefined;
    const opts = {
      width: width(figure),
      height: 220,
      scales: { x: { time } },
      axes: [
        labels ? { values: (u, splits) => splits.map((v) => labels[v] ?? "") } : {},
        { values: (u, splits) => splits.map((v) => `${v}${unit}`), size: 70 },
      ],
      series: [{}].concat(
        series.map(([label, , i]) => ({
          label,
          stroke: colours[i % colours.length],
          fill: bars ? colours[i % colours.length] + "55" : undefined,
          width: 2,
          paths: bar,
          points: { show: !bars },
        })),
      ),
    };
    const data = [x].concat(series.map(([, values]) => values));
    charts.push([figure, new uPlot(opts, data, figure)]);
  };

  const mib = (bytes) => bytes.map((b) => Math.round((b / 1048576) * 100) / 100);

  document.addEventListener("DOMContentLoaded", async () => {
    const response = await fetch("/analytics/data.json", { credentials: "same-origin" });
    if (!response.ok) return;
    const d = await response.json();
    const users = d.storage_by_user;
    draw(
      "chart-users",
      users.handles.map((_, i) => i),
      [["stored (MiB)", mib(users.logical_bytes), 0], ["in trash (MiB)", mib(users.deleted_bytes), 1]],
      { bars: true, time: false, labels: users.handles },
    );
    const up = d.uploads_daily;
    draw("chart-uploads", up.days, [["uploads", up.uploads, 0], ["virus detections", up.virus_detections, 1]], { bars: true });
    const lat = d.latency_daily;
    draw("chart-latency", lat.days, [["p50", lat.p50, 0], ["p90", lat.p90, 3], ["p99", lat.p99, 1]], { unit: " s" });
    const dead = d.dead_letters_daily;
    draw("chart-dead", dead.days, [["dead letters", dead.dead_letters, 1]], { bars: true });
    window.addEventListener("resize", () => {
      for (const [figure, chart] of charts) chart.setSize({ width: width(figure), height: 220 });
    });
    document.body.dataset.chartsDrawn = String(charts.length);
  });
})();
