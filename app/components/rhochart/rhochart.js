/* The ρ chart: a page's charts over every step of its ρ slider, switched in the browser (issue 18).
 *
 * One implementation for the app (app/components/rhochart/__init__.py wraps it as a Streamlit component) and for
 * the offline file (app/offline.py inlines it with plotly.js). `SamLabRho.mount(host, payload, index, opts)` draws
 * the slider (label, value, help, like the lab's other controls) and the charts at step `index`; moving the slider
 * redraws with Plotly.react from the payload (app/rhogrid.py describes it) and calls opts.onRelease(ρ) when the
 * student lets go (pointer up, touch end, each key press), never while dragging.
 */
(function (global) {
  "use strict";
  var TYPED = {f4: Float32Array, f8: Float64Array, i1: Int8Array, u1: Uint8Array, i2: Int16Array,
               u2: Uint16Array, i4: Int32Array, u4: Uint32Array};

  // Plotly's base64 typed arrays ({dtype, bdata}) decoded once, at load: plotly.js would decode them again on every
  // redraw, and a trace that does not change with ρ (the landscape) keeps the same arrays, which Plotly.react
  // then skips.
  function decode(v) {
    if (Array.isArray(v)) { for (var i = 0; i < v.length; i++) v[i] = decode(v[i]); return v; }
    if (v && typeof v === "object") {
      if (typeof v.bdata === "string" && TYPED[v.dtype]) {
        var bin = global.atob(v.bdata), bytes = new Uint8Array(bin.length);
        for (var j = 0; j < bin.length; j++) bytes[j] = bin.charCodeAt(j);
        var flat = new TYPED[v.dtype](bytes.buffer);
        var shape = v.shape ? String(v.shape).split(",").map(Number) : [flat.length];
        if (shape.length !== 2) return flat;
        var rows = [];  // a heatmap's z: one typed-array view per row
        for (var r = 0; r < shape[0]; r++) rows.push(flat.subarray(r * shape[1], (r + 1) * shape[1]));
        return rows;
      }
      for (var k in v) if (Object.prototype.hasOwnProperty.call(v, k)) v[k] = decode(v[k]);
    }
    return v;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function mount(host, payload, index, opts) {
    opts = opts || {};
    var P = global.Plotly, s = payload.slider, n = s.rhos.length;
    payload.charts.forEach(function (c) { decode(c.traces); });
    var root = el("div", "samlab-rho");
    // "st-key-<key>" as on the lab's Streamlit widgets, and aria-value* in ρ (not the step index): the lab's browser
    // harness (bench/_browser.py) finds and reads this ρ control as it finds the server slider it replaces.
    var control = el("div", "samlab-rho-control st-key-" + s.key);
    var head = el("div", "samlab-rho-head");
    var id = "samlab-rho-" + Math.random().toString(36).slice(2);
    var label = el("label", "samlab-rho-label", s.label);
    label.htmlFor = id;
    head.appendChild(label);
    if (s.help) {
      var help = el("span", "samlab-rho-help", "?");
      help.title = s.help; help.setAttribute("role", "img"); help.setAttribute("aria-label", s.help);
      help.tabIndex = 0;
      head.appendChild(help);
    }
    var value = el("span", "samlab-rho-value");
    value.setAttribute("data-testid", "rho-value");
    head.appendChild(value);
    var input = el("input", "samlab-rho-input");
    input.type = "range"; input.id = id; input.min = 0; input.max = n - 1; input.step = 1;
    input.setAttribute("data-testid", "rho-input");
    input.setAttribute("aria-valuemin", String(s.rhos[0]));
    input.setAttribute("aria-valuemax", String(s.rhos[n - 1]));
    var ends = el("div", "samlab-rho-ends");
    ends.appendChild(el("span", "", s.rhos[0].toFixed(s.digits)));
    ends.appendChild(el("span", "", s.rhos[n - 1].toFixed(s.digits)));
    control.appendChild(head); control.appendChild(input); control.appendChild(ends);
    root.appendChild(control);
    var row = el("div", "samlab-rho-charts"), divs = [];
    payload.charts.forEach(function (c, i) {
      var d = el("div", "samlab-rho-chart");
      d.setAttribute("data-chart", String(i));
      row.appendChild(d); divs.push(d);
    });
    root.appendChild(row);
    var blocks = (payload.blocks || []).map(function () { var b = el("div", "samlab-rho-block"); root.appendChild(b); return b; });
    if (payload.caption) root.appendChild(el("div", "samlab-rho-caption", payload.caption));
    host.appendChild(root);

    var config = Object.assign({responsive: true}, payload.config || {});
    var shown = -1, pending = -1, drawing = false;
    function show(i) {
      i = Math.max(0, Math.min(n - 1, i | 0));
      if (i === shown) return;
      shown = i;
      var rho = s.rhos[i].toFixed(s.digits);
      value.textContent = rho;
      input.value = String(i);
      input.setAttribute("aria-valuetext", s.label.split(" ")[0] + " = " + rho);
      input.setAttribute("aria-valuenow", String(s.rhos[i]));
      root.setAttribute("data-rho", rho);
      payload.charts.forEach(function (c, k) {
        var step = c.steps[i], layout = Object.assign({}, c.layout, c.patches[step[0]]);
        for (var key in layout) if (layout[key] === null) delete layout[key];
        if (c.template) layout.template = c.template;
        var data = step[1].map(function (t) { return Object.assign({}, c.traces[t]); });
        P.react(divs[k], data, layout, config);
      });
      (payload.blocks || []).forEach(function (b, k) { blocks[k].innerHTML = b.pool[b.steps[i]]; });
    }
    // A drag fires `input` faster than a chart can redraw: draw now when idle, else the latest step at the next
    // frame (intermediate steps are skipped, never queued).
    function request(i) {
      pending = i;
      if (drawing) return;
      drawing = true;
      global.requestAnimationFrame(function flush() {
        var j = pending; pending = -1;
        if (j >= 0) show(j);
        if (pending >= 0) global.requestAnimationFrame(flush); else drawing = false;
      });
    }
    input.addEventListener("input", function () {
      var i = +input.value;
      if (!drawing) { drawing = true; show(i); global.requestAnimationFrame(function () { drawing = false;
        if (pending >= 0) { var j = pending; pending = -1; request(j); } }); }
      else request(i);
    });
    input.addEventListener("change", function () {
      var i = +input.value;
      show(i);
      if (opts.onRelease) opts.onRelease(s.rhos[i], i);
    });
    // a click on a chart (the SAM-step page moves w there) reports its data coordinates
    show(index);
    if (opts.onClick) divs.forEach(function (d) { if (d.on && !d.__samlabClick) { d.__samlabClick = true;
      d.on("plotly_click", function (ev) { var p = ev && ev.points && ev.points[0];
        if (p && isFinite(p.x) && isFinite(p.y)) opts.onClick(+p.x, +p.y); }); } });
    return {
      root: root,
      setIndex: show,
      index: function () { return shown; },
      destroy: function () { divs.forEach(function (d) { try { P.purge(d); } catch (e) { /* gone */ } });
        if (root.parentNode) root.parentNode.removeChild(root); }
    };
  }

  global.SamLabRho = {mount: mount, decode: decode};
})(typeof window !== "undefined" ? window : this);
