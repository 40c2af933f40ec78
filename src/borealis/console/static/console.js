// Borealis console: the cluster page's live parts (charts, status, events), refreshed every 5 seconds.
// Every value from the server is set with textContent, never as markup.
(function () {
  "use strict";
  function acu(v) { return v === null ? "-" : String(Math.round(v * 100) / 100); }

  // The cluster list: each cluster's and instance's status and capacity, by identifier.
  function refreshList() {
    fetch("/console/api/clusters", { credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) { window.location.assign("/console/sign-in"); throw new Error("signed out"); }
      return r.json();
    }).then(function (body) {
      var status = {}, capacity = {};
      body.clusters.forEach(function (c) {
        status[c.id] = c.status; capacity[c.id] = acu(c.capacity);
        c.instances.forEach(function (i) { status[i.id] = i.status; capacity[i.id] = acu(i.capacity); });
      });
      document.querySelectorAll("[data-status]").forEach(function (el) {
        var v = status[el.getAttribute("data-status")];
        if (v !== undefined) el.textContent = v;
      });
      document.querySelectorAll("[data-capacity]").forEach(function (el) {
        var v = capacity[el.getAttribute("data-capacity")];
        if (v !== undefined) el.textContent = v;
      });
    }).catch(function () {}).then(function () { window.setTimeout(refreshList, 5000); });
  }

  var summary = document.getElementById("summary");
  if (!summary) {
    if (document.querySelector("[data-status]")) window.setTimeout(refreshList, 5000);
    return;
  }
  var cluster = summary.getAttribute("data-cluster");
  var base = "/console/api/clusters/" + encodeURIComponent(cluster);
  var plots = {};
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

  function getJSON(path) {
    return fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (r.status === 401) { window.location.assign("/console/sign-in"); throw new Error("signed out"); }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  function drawChart(figure, times, chart) {
    var holder = figure.querySelector(".plot");
    var data = [times];
    var series = [{}];
    var points = 0;
    var latest = [];
    chart.series.forEach(function (s, k) {
      data.push(s.values);
      series.push({ label: s.label, stroke: COLORS[k % COLORS.length], width: 2, spanGaps: true });
      var last = null;
      s.values.forEach(function (v) { if (v !== null) { points += 1; last = v; } });
      if (last !== null) latest.push(s.label + ": " + (Math.round(last * 100) / 100));
    });
    var newest = latest.length ? Math.max.apply(null, chart.series.map(function (s) {
      for (var k = s.values.length - 1; k >= 0; k--) if (s.values[k] !== null) return s.values[k];
      return 0;
    })) : 0;
    figure.setAttribute("data-points", String(points));
    figure.setAttribute("data-latest", String(newest));
    figure.querySelector(".latest").textContent = points ? "Latest " + latest.join(", ") : "No data yet.";
    var key = chart.metric;
    var old = plots[key];
    var labels = series.map(function (s) { return s.label || ""; }).join("|");
    if (old && old.labels === labels) { old.plot.setData(data); return; }
    if (old) old.plot.destroy();
    holder.textContent = "";
    if (!chart.series.length) return;
    var width = Math.max(280, holder.clientWidth || 420);
    var opts = { width: width, height: 180, series: series, scales: { x: { time: true } }, axes: [{}, { size: 50 }] };
    plots[key] = { labels: labels, plot: new uPlot(opts, data, holder) };
  }

  function refreshCharts() {
    return getJSON(base + "/metrics?minutes=60").then(function (body) {
      body.charts.forEach(function (chart) {
        var figure = document.querySelector('figure.chart[data-metric="' + chart.metric + '"]');
        if (figure) drawChart(figure, body.times, chart);
      });
    });
  }

  function refreshSummary() {
    return getJSON(base).then(function (c) {
      document.getElementById("cluster-status").textContent = c.status;
      var rows = document.querySelectorAll("section[aria-labelledby=inst-h] tbody tr");
      c.instances.forEach(function (inst, k) {
        var cells = rows[k] && rows[k].children;
        if (!cells || cells.length < 6) return;
        cells[0].textContent = inst.id; cells[1].textContent = inst.role; cells[2].textContent = inst.status;
        cells[3].textContent = inst.endpoint;
        cells[4].textContent = acu(inst.capacity);
      });
    });
  }

  function refreshEvents() {
    return getJSON(base + "/events").then(function (body) {
      var tbody = document.querySelector("#events tbody");
      if (!tbody || !body.events.length) return;
      tbody.textContent = "";
      body.events.forEach(function (e) {
        var tr = document.createElement("tr");
        [e.date, e.source, e.event_id, e.message].forEach(function (v) {
          var td = document.createElement("td");
          td.textContent = v === null || v === undefined ? "" : String(v);
          tr.appendChild(td);
        });
        tbody.appendChild(tr);
      });
    });
  }

  function tick() {
    Promise.all([refreshCharts(), refreshSummary(), refreshEvents()]).catch(function () {}).then(function () {
      window.setTimeout(tick, 5000);
    });
  }
  tick();
})();
