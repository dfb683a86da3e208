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
    // A single point gets an empty neighbour on each side, so it is drawn as a bar or
    // a point in the middle of a readable axis.
    if (x.length === 1) {
      const step = time ? 86400 : 1;
      x = [x[0] - step, x[0], x[0] + step];
      series = series.map(([label, values, i]) => [label, [null, values[0], null], i]);
    }
    const opts = {
      width: width(figure),
      height: 220,
      // Days are UTC dates: label them in UTC whatever the browser's zone.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: { x: { time }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] } },
      axes: [
        labels ? { values: (u, splits) => splits.map((v) => (Number.isInteger(v) ? labels[v] ?? "" : "")) } : {},
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

  // Bytes in the largest unit that keeps the biggest value at 1 or more.
  const scaled = (series) => {
    const max = Math.max(0, ...series.flat());
    const units = [["B", 1], ["KiB", 1024], ["MiB", 1048576], ["GiB", 1073741824], ["TiB", 1099511627776]];
    const [unit, size] = units.filter(([, s]) => max >= s).pop() || units[0];
    return [unit, series.map((values) => values.map((b) => Math.round((b / size) * 100) / 100))];
  };

  document.addEventListener("DOMContentLoaded", async () => {
    const response = await fetch("/analytics/data.json", { credentials: "same-origin" });
    if (!response.ok) return;
    const d = await response.json();
    const users = d.storage_by_user;
    const [unit, [stored, trashed]] = scaled([users.logical_bytes, users.deleted_bytes]);
    draw(
      "chart-users",
      users.handles.map((_, i) => i),
      [[`stored (${unit})`, stored, 0], [`in trash (${unit})`, trashed, 1]],
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
