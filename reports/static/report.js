/* splitbrain report: timeline (zoom, pan, hover) and latency/throughput plots on canvas.
 * Data comes from the JSON block #report-data; no network, no library.
 * Ops are stored as delta-encoded columns to keep 100,000-op pages small; drawing
 * only visits ops inside the visible window (binary search per lane). */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var RESULT_NAMES = ["ok", "fail", "info", "pending"];
  var RESULT_COLOURS = ["#8fd19e", "#f4a6a6", "#ffd27f", "#d0d0d0"];
  var FAULT_COLOURS = { partition: "#c7b8ea", kill: "#f7b2b2", pause: "#b2d7f7", clock: "#f7e3b2" };
  var END = Math.max(DATA.end_us, 1);

  function faultColour(kind) { return FAULT_COLOURS[kind] || "#dddddd"; }
  /* untimed histories (Porcupine, Knossos) use the event position as clock: 1 "s" an event */
  function secs(us) { return DATA.untimed ? "event " + Math.round(us / 1e6) : (us / 1e6).toFixed(3) + " s"; }
  function tick(s, digits) { return DATA.untimed ? "#" + Math.round(s) : s.toFixed(digits) + " s"; }
  function show(value) { return value === null || value === undefined ? "nil" : typeof value === "string" ? value : JSON.stringify(value); }

  function niceStep(span, count) {
    var raw = span / count, steps = [1, 2, 5], base = Math.pow(10, Math.floor(Math.log10(raw)));
    for (var i = 0; i < 4; i++) {
      for (var j = 0; j < 3; j++) { var s = steps[j] * base * Math.pow(10, i); if (s >= raw) return s; }
    }
    return raw;
  }

  function setupCanvas(canvas, cssHeight) {
    var ratio = window.devicePixelRatio || 1, width = canvas.clientWidth || 800;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(cssHeight * ratio);
    canvas.style.height = cssHeight + "px";
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return { ctx: ctx, width: width, height: cssHeight };
  }

  /* ------------------------------------------------------------ ops */
  var T = DATA.timeline, C = T.ops, N = C.id.length;
  var start = new Float64Array(N), end = new Float64Array(N);
  var acc = 0;
  for (var i = 0; i < N; i++) {
    acc += C.t0[i];
    start[i] = acc;
    end[i] = C.d[i] < 0 ? END : acc + C.d[i];
  }
  var byId = {};
  for (i = 0; i < N; i++) byId[C.id[i]] = i;
  var laneOps = T.lanes.map(function () { return []; });
  for (i = 0; i < N; i++) laneOps[C.l[i]].push(i);
  /* ops of one client thread never overlap, so ends are sorted too: search by end */
  laneOps.forEach(function (ops) {
    var last = 0;
    ops.ends = new Float64Array(ops.length);
    for (var k = 0; k < ops.length; k++) { last = Math.max(last, end[ops[k]]); ops.ends[k] = last; }
  });
  function firstEndingAfter(ops, t) {
    var lo = 0, hi = ops.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (ops.ends[mid] < t) lo = mid + 1; else hi = mid; }
    return lo;
  }

  function describe(k) {
    var f = T.fs[C.f[k]], key = T.keys[C.k[k]], r = RESULT_NAMES[C.r[k]];
    var lines = [
      "process " + C.p[k] + " · op #" + C.id[k],
      f + (key === null ? "" : " " + show(key)) + (f === "read" || f === "get" ? "" : " " + show(C.v[k])),
      "result: " + r + (C.o[k] !== null && C.o[k] !== undefined ? " → " + show(C.o[k]) : (r === "ok" && (f === "read" || f === "get") ? " → " + show(C.v[k]) : "")),
      "node: " + show(T.nodes[C.n[k]]),
      "invoked " + secs(start[k]) + (C.d[k] < 0 ? ", never returned" : ", returned " + secs(end[k]) + (DATA.untimed ? "" : " (" + (C.d[k] / 1000).toFixed(1) + " ms)"))
    ];
    if (T.errors[C.e[k]] !== null) lines.push("error: " + show(T.errors[C.e[k]]));
    return lines.join("\n");
  }

  /* ------------------------------------------------------------ timeline */
  function Timeline() {
    this.canvas = document.getElementById("timeline-canvas");
    this.box = document.getElementById("timeline-box");
    this.tip = document.getElementById("tooltip");
    this.status = document.getElementById("timeline-status");
    this.gutter = 78;
    this.top = 46;
    var lanes = Math.max(T.lanes.length, 1);
    this.laneH = lanes <= 30 ? 18 : Math.max(4, Math.floor(540 / lanes));
    this.lo = 0;
    this.hi = END;
    this.focus = DATA.focus;
    this.marked = {};
    if (this.focus) {
      var self = this;
      [["failed", "#c0002a"], ["missed", "#0057d9"], ["source", "#c76a00"]].forEach(function (p) {
        var id = self.focus[p[0]];
        if (id !== null && id !== undefined && byId[id] !== undefined) self.marked[byId[id]] = p[1];
      });
    }
    this.bind();
    this.draw();
  }
  Timeline.prototype.x = function (t) { return this.gutter + (t - this.lo) / (this.hi - this.lo) * (this.w - this.gutter - 8); };
  Timeline.prototype.t = function (x) { return this.lo + (x - this.gutter) / (this.w - this.gutter - 8) * (this.hi - this.lo); };
  Timeline.prototype.setView = function (lo, hi) {
    var span = Math.max(hi - lo, 200);
    span = Math.min(span, END * 1.2);
    lo = Math.max(Math.min(lo, END - span * 0.1), -span * 0.1);
    this.lo = lo; this.hi = lo + span;
    /* one redraw per frame however many wheel/drag events arrive */
    if (!this.pending) {
      var self = this;
      this.pending = true;
      window.requestAnimationFrame(function () { self.pending = false; self.draw(); });
    }
  };
  Timeline.prototype.draw = function () {
    var height = this.top + this.laneH * T.lanes.length + 4;
    var s = setupCanvas(this.canvas, height), ctx = s.ctx;
    this.w = s.width;
    var lo = this.lo, hi = this.hi, self = this, plotRight = s.width - 8;
    ctx.clearRect(0, 0, s.width, height);
    ctx.font = "11px system-ui, sans-serif";
    /* faults: shaded across every lane, labelled in the top band (two rows, so
       faults starting together, e.g. a partition and a pause, both stay readable) */
    var labelEnds = [-1, -1];
    DATA.faults.forEach(function (f) {
      var fe = f.e < 0 ? END : f.e;
      if (fe < lo || f.s > hi) return;
      var x0 = Math.max(self.x(f.s), self.gutter), x1 = Math.min(self.x(fe), plotRight);
      ctx.fillStyle = faultColour(f.kind);
      ctx.globalAlpha = 0.45;
      ctx.fillRect(x0, 18, Math.max(x1 - x0, 1), height - 18);
      ctx.globalAlpha = 1;
      var row = labelEnds[0] <= x0 ? 0 : labelEnds[1] <= x0 ? 1 : -1;
      if (row < 0) return;
      var room = Math.max(x1 - x0, 80), text = f.label.slice(0, Math.floor(room / 6));
      ctx.fillStyle = "#3d2b72";
      ctx.fillText(text, x0 + 3, 29 + row * 13);
      labelEnds[row] = x0 + ctx.measureText(text).width + 10;
    });
    /* lanes */
    for (var lane = 0; lane < T.lanes.length; lane++) {
      var y = this.top + lane * this.laneH;
      if (lane % 2) { ctx.fillStyle = "rgba(0,0,0,0.035)"; ctx.fillRect(0, y, s.width, this.laneH); }
      if (this.laneH >= 10) { ctx.fillStyle = "#333"; ctx.fillText(T.lane_word + " " + T.lanes[lane], 4, y + this.laneH - 5); }
    }
    /* ops in the window only */
    var drawn = 0, barH = Math.max(this.laneH - 4, 2);
    for (lane = 0; lane < laneOps.length; lane++) {
      var ops = laneOps[lane], y0 = this.top + lane * this.laneH + (this.laneH - barH) / 2, lastPx = -1, lastR = -1;
      for (var j = firstEndingAfter(ops, lo); j < ops.length; j++) {
        var k = ops[j];
        if (start[k] > hi) break;
        var x0 = Math.max(this.x(start[k]), this.gutter), x1 = Math.min(this.x(end[k]), plotRight);
        var px = Math.floor(x0);
        if (x1 - x0 < 1 && px === lastPx && C.r[k] === lastR && !this.marked[k]) continue; /* same pixel */
        lastPx = px; lastR = C.r[k];
        ctx.fillStyle = RESULT_COLOURS[C.r[k]];
        ctx.fillRect(x0, y0, Math.max(x1 - x0, 1), barH);
        drawn++;
        if (x1 - x0 > 6 && barH > 8) { ctx.strokeStyle = "rgba(0,0,0,0.35)"; ctx.strokeRect(x0 + 0.5, y0 + 0.5, x1 - x0 - 1, barH - 1); }
        if (x1 - x0 > 60 && barH >= 12) {
          ctx.fillStyle = "#222";
          var f = T.fs[C.f[k]], label = f + " " + (f === "read" || f === "get" ? show(C.o[k] === null ? C.v[k] : C.o[k]) : show(C.v[k]));
          ctx.fillText(label.slice(0, Math.floor((x1 - x0) / 6)), x0 + 3, y0 + barH - 3);
        }
      }
    }
    /* the ops the failure is about: outlined, plus a marker visible at any zoom */
    Object.keys(this.marked).forEach(function (key) {
      var k = +key, colour = self.marked[k];
      if (end[k] < lo || start[k] > hi) return;
      var y = self.top + C.l[k] * self.laneH;
      var x0 = self.x(start[k]), x1 = Math.max(self.x(end[k]), x0 + 2);
      ctx.strokeStyle = colour; ctx.lineWidth = 3;
      ctx.strokeRect(x0 - 1, y + 1, x1 - x0 + 2, self.laneH - 2);
      ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(x0, self.top); ctx.lineTo(x0, height); ctx.globalAlpha = 0.5; ctx.stroke(); ctx.globalAlpha = 1;
    });
    /* time axis */
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, s.width, 17);
    ctx.fillStyle = "#444"; ctx.strokeStyle = "#999";
    var step = niceStep((hi - lo) / 1e6, 8);
    for (var t = Math.ceil(lo / 1e6 / step) * step; t * 1e6 <= hi; t += step) {
      var x = this.x(t * 1e6);
      ctx.beginPath(); ctx.moveTo(x, 12); ctx.lineTo(x, 17); ctx.stroke();
      ctx.fillText(tick(t, step < 0.01 ? 3 : step < 1 ? 2 : 0), x + 2, 11);
    }
    this.status.textContent = "showing " + secs(Math.max(lo, 0)) + " – " + secs(Math.min(hi, END)) + " of " + secs(END) +
      " · " + N + " operations on " + T.lanes.length + " client lanes · " + drawn + " bars drawn";
  };
  Timeline.prototype.opAt = function (x, y) {
    var lane = Math.floor((y - this.top) / this.laneH);
    if (lane < 0 || lane >= laneOps.length || x < this.gutter) return -1;
    var ops = laneOps[lane], t = this.t(x), slack = 3 * (this.hi - this.lo) / this.w;
    for (var j = firstEndingAfter(ops, t - slack); j < ops.length; j++) {
      var k = ops[j];
      if (start[k] > t + slack) break;
      if (start[k] - slack <= t && t <= end[k] + slack) return k;
    }
    return -1;
  };
  Timeline.prototype.bind = function () {
    var self = this, drag = null;
    this.canvas.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var rect = self.canvas.getBoundingClientRect(), t = self.t(ev.clientX - rect.left);
      var factor = ev.deltaY > 0 ? 1.25 : 0.8;
      self.setView(t - (t - self.lo) * factor, t + (self.hi - t) * factor);
    }, { passive: false });
    this.canvas.addEventListener("mousedown", function (ev) { drag = { x: ev.clientX, lo: self.lo, hi: self.hi }; self.canvas.style.cursor = "grabbing"; });
    window.addEventListener("mouseup", function () { drag = null; self.canvas.style.cursor = "grab"; });
    this.canvas.addEventListener("mouseleave", function () { self.tip.hidden = true; });
    this.canvas.addEventListener("mousemove", function (ev) {
      var rect = self.canvas.getBoundingClientRect();
      if (drag) {
        var shift = (ev.clientX - drag.x) / (self.w - self.gutter - 8) * (drag.hi - drag.lo);
        self.setView(drag.lo - shift, drag.hi - shift);
        self.tip.hidden = true;
        return;
      }
      var k = self.opAt(ev.clientX - rect.left, ev.clientY - rect.top);
      if (k < 0) { self.tip.hidden = true; return; }
      self.tip.textContent = describe(k);
      self.tip.hidden = false;
      self.tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 380) + "px";
      self.tip.style.top = (ev.clientY + 14) + "px";
    });
    document.querySelectorAll("#timeline .controls button").forEach(function (button) {
      button.addEventListener("click", function () {
        var act = button.getAttribute("data-act"), mid = (self.lo + self.hi) / 2, half = (self.hi - self.lo) / 2;
        if (act === "zoom-in") self.setView(mid - half / 2, mid + half / 2);
        if (act === "zoom-out") self.setView(mid - half * 2, mid + half * 2);
        if (act === "fit") self.setView(0, END);
        if (act === "focus" && self.focus) self.setView(self.focus.window[0], self.focus.window[1]);
      });
    });
    window.addEventListener("resize", function () { self.draw(); });
  };

  /* ------------------------------------------------------------ plots */
  var F_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
  function shadeFaults(ctx, xOf, top, bottom, left, right) {
    DATA.faults.forEach(function (f) {
      var x0 = Math.max(xOf(f.s / 1e6), left), x1 = Math.min(xOf((f.e < 0 ? END : f.e) / 1e6), right);
      if (x1 <= x0) return;
      ctx.fillStyle = faultColour(f.kind); ctx.globalAlpha = 0.4;
      ctx.fillRect(x0, top, x1 - x0, bottom - top); ctx.globalAlpha = 1;
    });
  }
  function timeAxis(ctx, xOf, bottom, endS) {
    ctx.fillStyle = "#444"; ctx.strokeStyle = "#999";
    var step = niceStep(Math.max(endS, 0.001), 8);
    for (var t = 0; t <= endS + 1e-9; t += step) {
      var x = xOf(t);
      ctx.beginPath(); ctx.moveTo(x, bottom); ctx.lineTo(x, bottom + 4); ctx.stroke();
      ctx.fillText(tick(t, step < 1 ? 2 : 0), x - 10, bottom + 15);
    }
  }

  function latencyPlot() {
    var canvas = document.getElementById("latency-canvas");
    if (!canvas) return;
    var s = setupCanvas(canvas, 260), ctx = s.ctx, left = 56, right = s.width - 10, top = 8, bottom = 236;
    var endS = END / 1e6, series = DATA.latency, maxMs = 1, minMs = 1e9;
    ctx.font = "11px system-ui, sans-serif";
    series.forEach(function (sr) { sr.ms.forEach(function (v) { if (v > maxMs) maxMs = v; if (v < minMs) minMs = v; }); });
    minMs = Math.max(Math.min(minMs, 1), 0.01);
    var lmin = Math.floor(Math.log10(minMs)), lmax = Math.ceil(Math.log10(maxMs * 1.05));
    if (lmax <= lmin) lmax = lmin + 1;
    function xOf(t) { return left + t / Math.max(endS, 1e-9) * (right - left); }
    function yOf(ms) { return bottom - (Math.log10(Math.max(ms, minMs)) - lmin) / (lmax - lmin) * (bottom - top); }
    shadeFaults(ctx, xOf, top, bottom, left, right);
    ctx.strokeStyle = "#ddd"; ctx.fillStyle = "#444";
    for (var p = lmin; p <= lmax; p++) {
      var y = yOf(Math.pow(10, p));
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
      ctx.fillText((Math.pow(10, p) >= 1 ? Math.pow(10, p).toFixed(0) : Math.pow(10, p).toString()) + " ms", 4, y + 4);
    }
    timeAxis(ctx, xOf, bottom, endS);
    var fIndex = {}, legend = [];
    series.forEach(function (sr) {
      if (!(sr.f in fIndex)) fIndex[sr.f] = Object.keys(fIndex).length;
      var colour = F_COLOURS[fIndex[sr.f] % F_COLOURS.length];
      ctx.fillStyle = colour; ctx.strokeStyle = colour;
      for (var k = 0; k < sr.t.length; k++) {
        var x = xOf(sr.t[k]), y = yOf(sr.ms[k]);
        if (sr.result === "ok") ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
        else if (sr.result === "fail") { ctx.beginPath(); ctx.moveTo(x - 3, y - 3); ctx.lineTo(x + 3, y + 3); ctx.moveTo(x + 3, y - 3); ctx.lineTo(x - 3, y + 3); ctx.stroke(); }
        else { ctx.beginPath(); ctx.arc(x, y, 3, 0, 6.283); ctx.stroke(); }
      }
      legend.push('<span class="dot" style="background:' + colour + '"></span>' + sr.f + " " + sr.result + " (" + sr.count + ")");
    });
    var kinds = {};
    DATA.faults.forEach(function (f) { kinds[f.kind] = true; });
    var faultKeys = Object.keys(kinds).map(function (k) {
      return '<span class="dot" style="border-radius:0;background:' + faultColour(k) + '"></span>' + k;
    });
    document.getElementById("latency-legend").innerHTML = legend.join(" ") + " · ■ ok ✕ failed ○ unknown" +
      (faultKeys.length ? " · shaded: " + faultKeys.join(" ") : "");
  }

  function throughputPlot() {
    var canvas = document.getElementById("throughput-canvas");
    if (!canvas) return;
    var s = setupCanvas(canvas, 150), ctx = s.ctx, left = 56, right = s.width - 10, top = 8, bottom = 126;
    var th = DATA.throughput, endS = END / 1e6, maxRate = 1, colours = { ok: "#1a7f37", fail: "#c0002a", info: "#b07800" };
    ctx.font = "11px system-ui, sans-serif";
    Object.keys(th.series).forEach(function (r) { th.series[r].forEach(function (v) { if (v > maxRate) maxRate = v; }); });
    function xOf(t) { return left + t / Math.max(endS, 1e-9) * (right - left); }
    function yOf(v) { return bottom - v / maxRate * (bottom - top); }
    shadeFaults(ctx, xOf, top, bottom, left, right);
    ctx.fillStyle = "#444";
    ctx.fillText(maxRate.toFixed(0) + "/s", 4, top + 8); ctx.fillText("0", 4, bottom);
    timeAxis(ctx, xOf, bottom, endS);
    var legend = [];
    Object.keys(th.series).forEach(function (r) {
      var values = th.series[r];
      ctx.strokeStyle = colours[r]; ctx.lineWidth = 1.5; ctx.beginPath();
      for (var k = 0; k < values.length; k++) {
        var x = xOf((k + 0.5) * th.bucket_s), y = yOf(values[k]);
        if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      }
      ctx.stroke(); ctx.lineWidth = 1;
      legend.push('<span class="dot" style="background:' + colours[r] + '"></span>' + r);
    });
    document.getElementById("throughput-legend").innerHTML = "completed operations per second (" + th.bucket_s + " s buckets): " + legend.join(" ");
  }

  /* the sequence diagram can be long: start it scrolled to the failing op */
  var mark = document.querySelector("#messages svg .mark");
  var scroller = document.querySelector("#messages .scroll-y");
  if (mark && scroller) scroller.scrollTop = Math.max(+mark.getAttribute("y") - 120, 0);

  window.splitbrainReport = { timeline: new Timeline(), ops: N };
  latencyPlot();
  throughputPlot();
  window.addEventListener("resize", function () { latencyPlot(); throughputPlot(); });
})();
