// peftlab report: the Pareto explorer (report/explorer.py). Reads each .explorer element's
// data-explorer JSON and draws one SVG scatter per comparison: axis pickers, label filters, a
// tooltip per point and the Pareto front of the chosen axes. Text goes in with textContent only.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var W = 760, H = 420, M = { left: 78, right: 24, top: 16, bottom: 52 };

  function el(tag, attrs, parent) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function html(tag, attrs, parent) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(v, unit) {
    if (v === null || v === undefined) return "-";
    var a = Math.abs(v), prefixes = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var i = 0; i < prefixes.length; i++) {
      if (a >= prefixes[i][0]) return parseFloat((v / prefixes[i][0]).toPrecision(3)) + " " + prefixes[i][1] + (unit || "");
    }
    var text = a !== 0 && a < 0.01 ? v.toExponential(2) : String(Math.round(v * 1000) / 1000);
    return text + (unit ? " " + unit : "");
  }

  // A step of 1, 2 or 5 times a power of ten, about span / 4.
  function niceStep(span) {
    var raw = span / 4, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
  }

  // Log scale where the positive values span two orders of magnitude or more; zeros (zero-shot's
  // trainable parameters and FLOPs) then sit one decade below the smallest, at a tick marked 0.
  function scale(values, lo, hi) {
    var positive = values.filter(function (v) { return v > 0; });
    var min = Math.min.apply(null, values), max = Math.max.apply(null, values);
    var pmin = positive.length ? Math.min.apply(null, positive) : 0;
    var log = min >= 0 && positive.length > 1 && max / pmin >= 100;
    var zero = log ? Math.floor(Math.log10(pmin)) - 1 : 0;
    var f = log ? function (v) { return v > 0 ? Math.log10(v) : zero; } : function (v) { return v; };
    var a = f(min), b = f(max), ticks = [], i;
    if (a === b) { a -= 1; b += 1; }
    var pad = (b - a) * 0.06;
    a -= pad; b += pad;
    if (log) {
      if (min === 0) ticks.push(0);
      for (i = Math.ceil(zero + 1); i <= Math.floor(b); i++) ticks.push(Math.pow(10, i));
      if (ticks.length > 7) ticks = ticks.filter(function (t, j) { return t === 0 || j % 2 === 0; });
    } else {
      var step = niceStep(b - a);
      for (var t = Math.ceil(a / step) * step; t <= b + 1e-9 * step; t += step) ticks.push(Math.abs(t) < 1e-9 * step ? 0 : t);
    }
    var map = function (v) { return lo + (f(v) - a) / (b - a) * (hi - lo); };
    return { map: map, ticks: ticks, log: log };
  }

  // Indices of the points no other point beats on both axes (x better low or high, y likewise).
  function front(points, x, y) {
    var sx = x.higher ? -1 : 1, sy = y.higher ? -1 : 1;
    return points.map(function (p, i) {
      var dominated = points.some(function (q) {
        var qx = sx * q[x.key], px = sx * p[x.key], qy = sy * q[y.key], py = sy * p[y.key];
        return qx <= px && qy <= py && (qx < px || qy < py);
      });
      return dominated ? -1 : i;
    }).filter(function (i) { return i >= 0; });
  }

  function draw(state) {
    var d = state.data, svg = state.svg;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var x = d.axes.filter(function (a) { return a.key === state.x.value; })[0];
    var y = d.axes.filter(function (a) { return a.key === state.y.value; })[0];
    var shown = d.points.filter(function (p) {
      return state.on[p.label] && p[x.key] !== null && p[y.key] !== null;
    });
    state.root.setAttribute("data-shown", String(shown.length));
    if (!shown.length) {
      var empty = el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "class": "empty" }, svg);
      empty.textContent = "no run has both measures for the labels shown";
      return;
    }
    var sx = scale(shown.map(function (p) { return p[x.key]; }), M.left, W - M.right);
    var sy = scale(shown.map(function (p) { return p[y.key]; }), H - M.bottom, M.top);
    sx.ticks.forEach(function (t) {
      var px = sx.map(t);
      el("line", { x1: px, x2: px, y1: M.top, y2: H - M.bottom, "class": "gridline" }, svg);
      el("text", { x: px, y: H - M.bottom + 16, "text-anchor": "middle", "class": "tick" }, svg).textContent = fmt(t, x.unit);
    });
    sy.ticks.forEach(function (t) {
      var py = sy.map(t);
      el("line", { x1: M.left, x2: W - M.right, y1: py, y2: py, "class": "gridline" }, svg);
      el("text", { x: M.left - 6, y: py + 4, "text-anchor": "end", "class": "tick" }, svg).textContent = fmt(t, y.unit);
    });
    var xl = el("text", { x: (M.left + W - M.right) / 2, y: H - 12, "text-anchor": "middle", "class": "axis-x" }, svg);
    xl.textContent = x.name + (sx.log ? " (log)" : "") + (x.higher ? " → better" : " ← better");
    var yl = el("text", { x: 14, y: (M.top + H - M.bottom) / 2, "text-anchor": "middle", "class": "axis-y",
                          transform: "rotate(-90 14 " + (M.top + H - M.bottom) / 2 + ")" }, svg);
    yl.textContent = y.name + (sy.log ? " (log)" : "") + (y.higher ? " → better" : " ← better");

    var best = front(shown, x, y);
    var line = best.map(function (i) { return shown[i]; }).sort(function (a, b) { return a[x.key] - b[x.key]; });
    el("polyline", { points: line.map(function (p) { return sx.map(p[x.key]) + "," + sy.map(p[y.key]); }).join(" "),
                     "class": "front" }, svg);
    shown.forEach(function (p, i) {
      var onFront = best.indexOf(i) >= 0;
      if (p.top) {  // the top group: a ring around the point, the leaderboard's bold rows
        el("circle", { cx: sx.map(p[x.key]), cy: sy.map(p[y.key]), r: 10, "class": "top-ring", stroke: p.color,
                       fill: "none", "data-label": p.label }, svg);
      }
      var c = el("circle", { cx: sx.map(p[x.key]), cy: sy.map(p[y.key]), r: 6, "class": "pt" + (onFront ? " on-front" : ""),
                             "data-run": p.run, "data-label": p.label, stroke: p.color,
                             fill: onFront ? p.color : "#fff" }, svg);
      el("title", {}, c).textContent = p.run;
      c.addEventListener("mouseenter", function (ev) { tip(state, p, x, y, ev); });
      c.addEventListener("mouseleave", function () { state.tip.hidden = true; });
    });
  }

  function tip(state, p, x, y, ev) {
    var t = state.tip;
    t.textContent = "";
    html("b", {}, t).textContent = p.label;
    html("div", {}, t).textContent = "run " + p.run + (p.seed === null ? "" : " (seed " + p.seed + ")");
    html("div", {}, t).textContent = "standing: " + p.standing;
    html("div", {}, t).textContent = x.name + ": " + fmt(p[x.key], x.unit);
    html("div", {}, t).textContent = y.name + ": " + fmt(p[y.key], y.unit);
    var box = state.root.getBoundingClientRect();
    t.style.left = (ev.clientX - box.left + 12) + "px";
    t.style.top = (ev.clientY - box.top + 12) + "px";
    t.hidden = false;
  }

  function picker(state, name, selected, controls) {
    var label = html("label", {}, controls);
    label.appendChild(document.createTextNode(name + " "));
    var select = html("select", { "class": "pick-" + name }, label);
    state.data.axes.forEach(function (a) {
      var o = html("option", { value: a.key }, select);
      o.textContent = a.name;
    });
    select.value = selected;
    select.addEventListener("change", function () { draw(state); });
    return select;
  }

  function build(root) {
    var d = JSON.parse(root.getAttribute("data-explorer"));
    root.textContent = "";
    var state = { root: root, data: d, on: {} };
    var keys = d.axes.map(function (a) { return a.key; });
    var controls = html("div", { "class": "controls" }, root);
    state.x = picker(state, "x", keys.indexOf(d.x) >= 0 ? d.x : keys[0], controls);
    state.y = picker(state, "y", keys.indexOf(d.y) >= 0 ? d.y : keys[keys.length > 1 ? 1 : 0], controls);
    var filters = html("div", { "class": "filters" }, root);
    var labels = [];
    d.points.forEach(function (p) { if (labels.indexOf(p.label) < 0) labels.push(p.label); });
    labels.forEach(function (name) {
      state.on[name] = true;
      var color = d.points.filter(function (p) { return p.label === name; })[0].color;
      var label = html("label", { "class": "filter" }, filters);
      var box = html("input", { type: "checkbox", value: name }, label);
      box.checked = true;
      box.addEventListener("change", function () { state.on[name] = box.checked; draw(state); });
      html("span", { "class": "swatch", style: "background:" + color }, label);
      label.appendChild(document.createTextNode(name));
    });
    state.svg = el("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", role: "img" }, root);
    state.tip = html("div", { "class": "tip" }, root);
    state.tip.hidden = true;
    draw(state);
  }

  Array.prototype.forEach.call(document.querySelectorAll(".explorer[data-explorer]"), build);
})();
