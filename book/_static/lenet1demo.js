/* The live network: LeNet-1's forward pass in the reader's browser.
 *
 * Plain JavaScript, no library. The page (notebooks/09_live_network.md) embeds a JSON document
 * exported by lenet1/web.py: every network's weights (float32, base64) and every constant of
 * its forward pass (units, padding values, connection table, shapes), and a sample of test
 * digits. This file computes, in double precision, what the package's LeNet1.layers and
 * ModernLeNet1.layers compute, and reads the outputs as the package does
 * (lenet1.experiments.recipes.read_outputs). It never guesses a constant: an export it does not
 * understand is an error.
 *
 * window.lenet1demo is its interface (for the reader's console and for the browser test):
 * classify(pixels), layers(pixels), load(name), networks(), current(), input(), threshold(),
 * verdict(outputs), show(pixels), pick(i), clear(), undo(), stroke(points), benchmark(calls).
 */
(function () {
  "use strict";

  var FORMAT = 1;

  function fail(message) {
    throw new Error("lenet1demo: " + message);
  }

  // --- the data -------------------------------------------------------------------------------

  function decodeFloats(text) {
    var binary = atob(text);
    if (binary.length % 4) fail("a float32 array's byte count is not a multiple of 4");
    var view = new DataView(new ArrayBuffer(binary.length));
    for (var i = 0; i < binary.length; i++) view.setUint8(i, binary.charCodeAt(i));
    var values = new Float64Array(binary.length / 4);
    for (var k = 0; k < values.length; k++) values[k] = view.getFloat32(4 * k, true);
    return values;
  }

  function product(shape) {
    return shape.reduce(function (a, b) { return a * b; }, 1);
  }

  // --- the arithmetic ---------------------------------------------------------------------------

  function unitFunction(name, amplitude, slope) {
    if (name === "scaled_tanh") return function (a) { return amplitude * Math.tanh(slope * a); };
    if (name === "tanh") return Math.tanh;
    if (name === "relu") return function (a) { return a > 0 ? a : 0; };
    if (name === "identity") return function (a) { return a; };
    return fail("unknown unit " + JSON.stringify(name));
  }

  // A convolution at stride S with K x K kernels over inMaps maps of inSize x inSize, padded
  // with `background` (padBefore rows/columns before, the rest after), plus one bias per unit.
  function convolve(x, inMaps, inSize, background, w, b, outMaps, outSize, table, K, S, padBefore) {
    var y = new Float64Array(outMaps * outSize * outSize);
    for (var o = 0; o < outMaps; o++) {
      for (var i = 0; i < outSize; i++) {
        for (var j = 0; j < outSize; j++) {
          var sum = b[(o * outSize + i) * outSize + j];
          for (var m = 0; m < inMaps; m++) {
            if (table && !table[o * inMaps + m]) continue; // its weights are exactly zero
            var wBase = (o * inMaps + m) * K * K, xBase = m * inSize * inSize;
            for (var u = 0; u < K; u++) {
              var r = i * S + u - padBefore, rowInside = r >= 0 && r < inSize;
              for (var v = 0; v < K; v++) {
                var c = j * S + v - padBefore;
                var value = rowInside && c >= 0 && c < inSize ? x[xBase + r * inSize + c]
                  : background;
                sum += w[wBase + u * K + v] * value;
              }
            }
          }
          y[(o * outSize + i) * outSize + j] = sum;
        }
      }
    }
    return y;
  }

  function linear(x, w, b) {
    var outputs = b.length, inputs = x.length, y = new Float64Array(outputs);
    for (var o = 0; o < outputs; o++) {
      var sum = b[o], base = o * inputs;
      for (var i = 0; i < inputs; i++) sum += w[base + i] * x[i];
      y[o] = sum;
    }
    return y;
  }

  function apply(values, f) {
    for (var i = 0; i < values.length; i++) values[i] = f(values[i]);
    return values;
  }

  function Network(spec) {
    var self = this;
    ["key", "title", "description", "hidden_unit", "output_unit", "reading", "amplitude",
      "slope", "input_size", "input_background", "h2_background", "kernel", "stride",
      "pad_before", "pad_after", "maps", "h1_size", "h2_size", "h3_units", "outputs", "table",
      "tta", "threshold", "weights"].forEach(function (name) {
      if (!(name in spec)) fail("the exported network lacks " + name);
    });
    if (["outputs", "softmax_place_code"].indexOf(spec.reading) < 0) {
      fail("unknown way of reading the outputs: " + JSON.stringify(spec.reading));
    }
    this.spec = spec;
    this.hidden = unitFunction(spec.hidden_unit, spec.amplitude, spec.slope);
    this.output = unitFunction(spec.output_unit, spec.amplitude, spec.slope);
    var K = spec.kernel, S = spec.stride, padded = function (n) {
      return Math.floor((spec.pad_before + n + spec.pad_after - K) / S) + 1;
    };
    if (padded(spec.input_size) !== spec.h1_size || padded(spec.h1_size) !== spec.h2_size) {
      fail("the exported shapes do not follow from the kernel, stride and padding");
    }
    var M = spec.maps, shapes = {
      h1_weight: [M, 1, K, K], h1_bias: [M, spec.h1_size, spec.h1_size],
      h2_weight: [M, M, K, K], h2_bias: [M, spec.h2_size, spec.h2_size],
      h3_weight: [spec.h3_units, M * spec.h2_size * spec.h2_size], h3_bias: [spec.h3_units],
      out_weight: [spec.outputs, spec.h3_units], out_bias: [spec.outputs]
    };
    this.w = {};
    Object.keys(shapes).forEach(function (name) {
      var entry = spec.weights[name];
      if (!entry) fail("the exported network lacks " + name);
      if (JSON.stringify(entry.shape) !== JSON.stringify(shapes[name])) {
        fail(name + " has shape " + JSON.stringify(entry.shape) + ", expected " +
          JSON.stringify(shapes[name]));
      }
      var values = decodeFloats(entry.data);
      if (values.length !== product(shapes[name])) fail(name + " has the wrong length");
      self.w[name] = values;
    });
    this.table = new Uint8Array(M * M);
    for (var o = 0; o < M; o++) for (var m = 0; m < M; m++) this.table[o * M + m] = spec.table[o][m] ? 1 : 0;
  }

  Network.prototype.check = function (pixels) {
    var n = this.spec.input_size * this.spec.input_size;
    if (!pixels || pixels.length !== n) {
      fail("an input is " + n + " grey levels (row-major), got " + (pixels ? pixels.length : pixels));
    }
    for (var i = 0; i < n; i++) {
      var p = pixels[i];
      if (typeof p !== "number" || !isFinite(p) || p < -1 - 1e-6 || p > 1 + 1e-6) {
        fail("grey levels must be numbers in [-1, 1], got " + p + " at " + i);
      }
    }
  };

  // Every layer's states, as LeNet1.layers / ModernLeNet1.layers (evaluation mode) give them.
  Network.prototype.layers = function (pixels) {
    var s = this.spec, w = this.w;
    var h1 = apply(convolve(pixels, 1, s.input_size, s.input_background, w.h1_weight, w.h1_bias,
      s.maps, s.h1_size, null, s.kernel, s.stride, s.pad_before), this.hidden);
    var h2 = apply(convolve(h1, s.maps, s.h1_size, s.h2_background, w.h2_weight, w.h2_bias,
      s.maps, s.h2_size, this.table, s.kernel, s.stride, s.pad_before), this.hidden);
    var h3 = apply(linear(h2, w.h3_weight, w.h3_bias), this.hidden);
    var sums = linear(h3, w.out_weight, w.out_bias);
    var out = apply(Float64Array.from(sums), this.output);
    return { h1: h1, h2: h2, h3: h3, sums: sums, out: out };
  };

  // The outputs as the package reads them (lenet1.experiments.recipes.read_outputs).
  Network.prototype.read = function (out) {
    if (this.spec.reading !== "softmax_place_code") return Float64Array.from(out);
    var top = -Infinity, i, total = 0, p = new Float64Array(out.length);
    for (i = 0; i < out.length; i++) top = Math.max(top, out[i]);
    for (i = 0; i < out.length; i++) { p[i] = Math.exp(out[i] - top); total += p[i]; }
    for (i = 0; i < out.length; i++) p[i] = 2 * (p[i] / total) - 1;
    return p;
  };

  // lenet1.augment.translate: out[y][x] = in[y - dy][x - dx], the background outside.
  Network.prototype.shifted = function (pixels, dx, dy) {
    var n = this.spec.input_size, moved = new Float64Array(n * n);
    for (var y = 0; y < n; y++) {
      for (var x = 0; x < n; x++) {
        var sy = y - dy, sx = x - dx;
        moved[y * n + x] = sy >= 0 && sy < n && sx >= 0 && sx < n ? pixels[sy * n + sx]
          : this.spec.input_background;
      }
    }
    return moved;
  };

  Network.prototype.classify = function (pixels) {
    var k = this.spec.tta;
    if (!k) return this.read(this.layers(pixels).out);
    var total = new Float64Array(this.spec.outputs); // lenet1.modern.predict_shifted
    for (var dy = -k; dy <= k; dy++) {
      for (var dx = -k; dx <= k; dx++) {
        var read = this.read(this.layers(this.shifted(pixels, dx, dy)).out);
        for (var i = 0; i < total.length; i++) total[i] += read[i];
      }
    }
    var copies = (2 * k + 1) * (2 * k + 1);
    for (var j = 0; j < total.length; j++) total[j] /= copies;
    return total;
  };

  // The paper's rule (lenet1.rejection): the answer is the first most active output; the
  // margin is the highest output minus the second highest; rejected when the margin is
  // strictly below the threshold.
  function verdict(outputs, threshold) {
    var answer = 0, i;
    for (i = 1; i < outputs.length; i++) if (outputs[i] > outputs[answer]) answer = i;
    var second = -Infinity;
    for (i = 0; i < outputs.length; i++) if (i !== answer) second = Math.max(second, outputs[i]);
    var margin = outputs[answer] - second;
    return { answer: answer, margin: margin, threshold: threshold, accepted: margin >= threshold };
  }

  // --- the reader's drawing -> the network's input -----------------------------------------

  // Crop the strokes to their bounding box (the pen's width included), scale it to fill the
  // input's longer side (aspect kept), centre it, and draw the strokes PEN_WIDTH input pixels
  // wide; a pixel's grey level is its inked fraction, from the background (-1) to ink (+1).
  var SUPERSAMPLE = 8;

  function rasterise(strokes, input, scratch) {
    var n = input.size, pen = input.pen_width, size = n * SUPERSAMPLE;
    var pixels = new Float64Array(n * n);
    var points = [];
    strokes.forEach(function (stroke) { points = points.concat(stroke); });
    if (!points.length) {
      pixels.fill(input.background);
      return pixels;
    }
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    points.forEach(function (p) {
      x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]);
      y0 = Math.min(y0, p[1]); y1 = Math.max(y1, p[1]);
    });
    var extent = Math.max(x1 - x0, y1 - y0, 1e-9);
    var scale = (n - pen) / extent; // input pixels per drawing unit
    scratch.width = size; scratch.height = size;
    var g = scratch.getContext("2d");
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.fillStyle = "#fff";
    g.fillRect(0, 0, size, size);
    g.setTransform(scale * SUPERSAMPLE, 0, 0, scale * SUPERSAMPLE,
      size / 2 - (x0 + x1) / 2 * scale * SUPERSAMPLE, size / 2 - (y0 + y1) / 2 * scale * SUPERSAMPLE);
    g.strokeStyle = "#000"; g.fillStyle = "#000";
    g.lineWidth = pen / scale; g.lineCap = "round"; g.lineJoin = "round";
    strokes.forEach(function (stroke) {
      if (!stroke.length) return;
      g.beginPath();
      if (stroke.length === 1) {
        g.arc(stroke[0][0], stroke[0][1], pen / scale / 2, 0, 2 * Math.PI);
        g.fill();
        return;
      }
      g.moveTo(stroke[0][0], stroke[0][1]);
      for (var i = 1; i < stroke.length; i++) g.lineTo(stroke[i][0], stroke[i][1]);
      g.stroke();
    });
    var data = g.getImageData(0, 0, size, size).data;
    var block = SUPERSAMPLE * SUPERSAMPLE;
    for (var y = 0; y < n; y++) {
      for (var x = 0; x < n; x++) {
        var ink = 0;
        for (var v = 0; v < SUPERSAMPLE; v++) {
          var row = (y * SUPERSAMPLE + v) * size;
          for (var u = 0; u < SUPERSAMPLE; u++) ink += 1 - data[4 * (row + x * SUPERSAMPLE + u)] / 255;
        }
        var fraction = ink / block;
        pixels[y * n + x] = input.background + (input.ink - input.background) * fraction;
      }
    }
    return pixels;
  }

  // --- pictures -----------------------------------------------------------------------------

  function element(tag, className, parent, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function canvas(width, height, className, parent, label) {
    var c = element("canvas", className, parent);
    c.width = width; c.height = height;
    if (label) { c.setAttribute("role", "img"); c.setAttribute("aria-label", label); }
    return c;
  }

  // Grey levels: the background (-1) white, ink (+1) black, as the book draws digits.
  function paintGrey(c, values, offset, width, height) {
    var g = c.getContext("2d"), image = g.createImageData(width, height);
    for (var i = 0; i < width * height; i++) {
      var t = Math.min(1, Math.max(0, (values[offset + i] + 1) / 2));
      var level = Math.round(255 * (1 - t));
      image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = level;
      image.data[4 * i + 3] = 255;
    }
    g.putImageData(image, 0, 0);
  }

  // States: negative blue, zero white, positive red (the book's RdBu_r), +-limit saturated.
  var RED = [178, 24, 43], BLUE = [33, 102, 172];

  function paintSigned(c, values, offset, width, height, limit) {
    var g = c.getContext("2d"), image = g.createImageData(width, height);
    for (var i = 0; i < width * height; i++) {
      var t = Math.max(-1, Math.min(1, values[offset + i] / limit));
      var end = t < 0 ? BLUE : RED, a = Math.abs(t);
      for (var k = 0; k < 3; k++) image.data[4 * i + k] = Math.round(255 * (1 - a) + end[k] * a);
      image.data[4 * i + 3] = 255;
    }
    g.putImageData(image, 0, 0);
  }

  function limitOf(network, values) {
    var unit = network.spec.hidden_unit;
    if (unit === "scaled_tanh") return network.spec.amplitude;
    if (unit === "tanh") return 1;
    var top = 0;
    for (var i = 0; i < values.length; i++) top = Math.max(top, Math.abs(values[i]));
    return top || 1;
  }

  // --- the page -----------------------------------------------------------------------------

  function Demo(root, data) {
    if (data.format !== FORMAT) fail("data format " + data.format + ", this script reads " + FORMAT);
    var self = this;
    this.root = root;
    this.data = data;
    this.networks = data.networks.map(function (spec) { return new Network(spec); });
    if (!this.networks.length) fail("no network was exported");
    var n = data.input.size;
    var sample = decodeFloats(data.sample.pixels);
    if (sample.length !== data.sample.indices.length * n * n) fail("the sample digits are truncated");
    this.sample = data.sample.indices.map(function (index, k) {
      return { index: index, label: data.sample.labels[k], kind: data.sample.kinds[k],
        pixels: sample.subarray(k * n * n, (k + 1) * n * n) };
    });
    this.strokes = [];
    this.shown = null; // the grey levels shown instead of a drawing (a test digit), or null
    this.shownDigit = null; // which sample digit that is (null: given by the console)
    this.pixels = null;
    this.timings = {};
    this.build();
    this.network = this.networks[0];
    if (this.sample.length) { this.shown = this.sample[0].pixels; this.shownDigit = this.sample[0]; }
    this.select(this.networks[0].spec.key);
  }

  Demo.prototype.build = function () {
    var self = this, root = this.root;
    root.textContent = "";
    var bar = element("div", "ld-bar", root);
    element("span", "ld-bar-label", bar, "Network:");
    this.buttons = {};
    this.networks.forEach(function (network) {
      var button = element("button", "ld-choice", bar, network.spec.title);
      button.type = "button";
      button.addEventListener("click", function () { self.select(network.spec.key); });
      self.buttons[network.spec.key] = button;
    });
    this.description = element("p", "ld-description", root);

    var main = element("div", "ld-main", root);
    var draw = element("section", "ld-panel ld-draw", main);
    element("h4", null, draw, "Draw a digit");
    this.pad = canvas(280, 280, "ld-pad", draw, "drawing area: draw a digit with the mouse, a pen or a finger");
    var tools = element("div", "ld-tools", draw);
    var undo = element("button", "ld-tool", tools, "Undo");
    var clear = element("button", "ld-tool", tools, "Clear");
    undo.type = clear.type = "button";
    undo.addEventListener("click", function () { self.undo(); });
    clear.addEventListener("click", function () { self.clear(); });
    this.note = element("p", "ld-note", draw);

    var side = element("section", "ld-panel ld-side", main);
    var top = element("div", "ld-side-top", side);
    var seen = element("div", "ld-seen", top);
    element("h4", null, seen, "What it sees");
    this.inputCanvas = canvas(this.data.input.size, this.data.input.size, "ld-input", seen, "the 16 by 16 input");
    element("p", "ld-caption", seen, "16\u00d716, \u22121 white to +1 black");
    var verdictBox = element("div", "ld-verdict", top);
    element("h4", null, verdictBox, "Its answer");
    this.answerDigit = element("div", "ld-digit", verdictBox, "");
    this.answerText = element("p", "ld-verdict-text", verdictBox, "");
    this.bars = element("div", "ld-bars", side);
    this.barRows = [];
    for (var k = 0; k < this.networks[0].spec.outputs; k++) {
      var row = element("div", "ld-bar-row", this.bars);
      element("span", "ld-bar-label", row, String(k));
      var track = element("span", "ld-track", row);
      var fill = element("span", "ld-fill", track);
      element("span", "ld-zero", track);
      var value = element("span", "ld-value", row, "");
      this.barRows.push({ row: row, fill: fill, value: value });
    }
    this.rule = element("p", "ld-caption ld-rule", side);

    var hidden = element("div", "ld-layers", root);
    this.mapCanvases = {};
    var layerInfo = [["h1", "H1: 12 maps of 8\u00d78", "ld-h1"], ["h2", "H2: 12 maps of 4\u00d74", "ld-h2"],
      ["h3", "H3: 30 units", "ld-h3"]];
    layerInfo.forEach(function (info) {
      var panel = element("section", "ld-panel ld-layer " + info[2], hidden);
      element("h4", null, panel, info[1]);
      var grid = element("div", "ld-maps", panel);
      if (info[0] === "h3") {
        self.mapCanvases.h3 = [canvas(15, 2, "ld-map ld-map-h3", grid, "H3's 30 states")];
        return;
      }
      var size = info[0] === "h1" ? self.networks[0].spec.h1_size : self.networks[0].spec.h2_size;
      self.mapCanvases[info[0]] = [];
      for (var m = 0; m < self.networks[0].spec.maps; m++) {
        self.mapCanvases[info[0]].push(canvas(size, size, "ld-map", grid, info[0].toUpperCase() + " map " + m));
      }
    });
    element("p", "ld-caption ld-legend", root,
      "States: blue negative, white zero, red positive (saturated at the unit's largest value; " +
      "for ReLU units, at the layer's largest state).");

    var samples = element("section", "ld-panel ld-samples", root);
    element("h4", null, samples, "Or pick a test digit");
    this.sampleNote = element("p", "ld-caption", samples, "");
    var grid = element("div", "ld-sample-grid", samples);
    this.sampleButtons = this.sample.map(function (digit, k) {
      var button = element("button", "ld-sample", grid);
      button.type = "button";
      var c = canvas(self.data.input.size, self.data.input.size, "ld-thumb", button,
        "test digit " + digit.index + ", labelled " + digit.label);
      paintGrey(c, digit.pixels, 0, self.data.input.size, self.data.input.size);
      element("span", "ld-sample-label", button, String(digit.label));
      button.addEventListener("click", function () { self.pick(k); });
      return button;
    });
    this.timing = element("p", "ld-caption ld-timing", root, "");

    this.scratch = document.createElement("canvas");
    this.listen();
  };

  Demo.prototype.listen = function () {
    var self = this, pad = this.pad, drawing = null;
    function point(event) {
      var box = pad.getBoundingClientRect();
      return [(event.clientX - box.left) * pad.width / box.width,
        (event.clientY - box.top) * pad.height / box.height];
    }
    pad.addEventListener("pointerdown", function (event) {
      if (event.button !== undefined && event.button > 0) return;
      event.preventDefault();
      if (pad.setPointerCapture) { try { pad.setPointerCapture(event.pointerId); } catch (e) { /* synthetic */ } }
      if (self.shown !== null) { self.shown = self.shownDigit = null; self.strokes = []; }
      drawing = [point(event)];
      self.strokes.push(drawing);
      self.schedule();
    });
    pad.addEventListener("pointermove", function (event) {
      if (!drawing) return;
      event.preventDefault();
      var events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
      (events.length ? events : [event]).forEach(function (e) { drawing.push(point(e)); });
      self.schedule();
    });
    function end() {
      if (!drawing) return;
      drawing = null;
      self.schedule();
    }
    pad.addEventListener("pointerup", end);
    pad.addEventListener("pointercancel", end);
    pad.addEventListener("lostpointercapture", end);
  };

  Demo.prototype.schedule = function () {
    var self = this;
    if (this.pending) return;
    this.pending = true;
    (window.requestAnimationFrame || setTimeout)(function () {
      self.pending = false;
      self.update();
    });
  };

  Demo.prototype.drawPad = function () {
    var g = this.pad.getContext("2d"), size = this.pad.width, n = this.data.input.size;
    g.fillStyle = "#fff";
    g.fillRect(0, 0, size, size);
    if (this.shown !== null) {
      var cell = size / n;
      for (var y = 0; y < n; y++) {
        for (var x = 0; x < n; x++) {
          var t = (this.shown[y * n + x] + 1) / 2, level = Math.round(255 * (1 - t));
          g.fillStyle = "rgb(" + level + "," + level + "," + level + ")";
          g.fillRect(Math.floor(x * cell), Math.floor(y * cell), Math.ceil(cell), Math.ceil(cell));
        }
      }
      return;
    }
    g.strokeStyle = "#111"; g.fillStyle = "#111";
    g.lineWidth = 18; g.lineCap = "round"; g.lineJoin = "round";
    this.strokes.forEach(function (stroke) {
      g.beginPath();
      if (stroke.length === 1) {
        g.arc(stroke[0][0], stroke[0][1], 9, 0, 2 * Math.PI);
        g.fill();
        return;
      }
      g.moveTo(stroke[0][0], stroke[0][1]);
      for (var i = 1; i < stroke.length; i++) g.lineTo(stroke[i][0], stroke[i][1]);
      g.stroke();
    });
  };

  Demo.prototype.update = function () {
    var n = this.data.input.size, network = this.network, spec = network.spec;
    this.drawPad();
    this.pixels = this.shown !== null ? Float64Array.from(this.shown)
      : rasterise(this.strokes, this.data.input, this.scratch);
    paintGrey(this.inputCanvas, this.pixels, 0, n, n);
    var states = network.layers(this.pixels), outputs = network.classify(this.pixels);
    var self = this;
    ["h1", "h2"].forEach(function (layer) {
      var size = layer === "h1" ? spec.h1_size : spec.h2_size, limit = limitOf(network, states[layer]);
      self.mapCanvases[layer].forEach(function (c, m) {
        paintSigned(c, states[layer], m * size * size, size, size, limit);
      });
    });
    paintSigned(this.mapCanvases.h3[0], states.h3, 0, 15, 2, limitOf(network, states.h3));
    var judged = verdict(outputs, spec.threshold);
    var empty = this.shown === null && !this.strokes.length;
    var scale = spec.reading === "softmax_place_code" ? 1
      : spec.output_unit === "scaled_tanh" ? spec.amplitude : 1;
    this.barRows.forEach(function (bar, k) {
      var v = Math.max(-1, Math.min(1, outputs[k] / scale));
      bar.fill.style.left = (50 + 50 * Math.min(0, v)) + "%";
      bar.fill.style.width = (50 * Math.abs(v)) + "%";
      bar.value.textContent = (outputs[k] >= 0 ? "+" : "\u2212") + Math.abs(outputs[k]).toFixed(3);
      bar.row.className = "ld-bar-row" + (k === judged.answer
        ? (judged.accepted ? " ld-top ld-accepted" : " ld-top ld-rejected") : "");
    });
    this.answerDigit.textContent = String(judged.answer);
    this.answerDigit.className = "ld-digit " + (judged.accepted ? "ld-accepted" : "ld-rejected");
    this.answerText.textContent = (judged.accepted ? "Accepted" : "Rejected") +
      ": the two largest outputs differ by " + judged.margin.toFixed(3) +
      (judged.accepted ? ", not less than " : ", less than ") + spec.threshold.toFixed(3) + "." +
      (empty ? " (The input is blank.)" : "");
    if (this.shown !== null) {
      var digit = this.shownDigit;
      this.note.textContent = (digit ? "Test digit #" + digit.index + ", labelled " + digit.label
        : "A given input") + ". Draw on it to start a drawing of your own.";
    } else {
      this.note.textContent = this.strokes.length ? this.strokes.length + " stroke" +
        (this.strokes.length > 1 ? "s" : "") + "." : "Draw with the mouse, a pen or a finger.";
    }
    this.root.setAttribute("data-answer", String(judged.answer));
    this.last = { outputs: outputs, verdict: judged };
  };

  Demo.prototype.select = function (key) {
    var found = this.networks.filter(function (n) { return n.spec.key === key; })[0];
    if (!found) fail("no network named " + JSON.stringify(key));
    this.network = found;
    var self = this, spec = found.spec;
    Object.keys(this.buttons).forEach(function (k) {
      self.buttons[k].setAttribute("aria-pressed", String(k === key));
      self.buttons[k].classList.toggle("ld-selected", k === key);
    });
    this.description.textContent = spec.description;
    this.rule.textContent = "Rejected when the two largest outputs differ by less than " +
      spec.threshold.toFixed(3) + ": the threshold at which this network makes " +
      (100 * spec.target_error).toFixed(0) + "% errors on the test digits it accepts (it " +
      "rejects " + (100 * spec.rejection.rejection).toFixed(1) + "% of them)." +
      (spec.tta ? " This network reads each digit at every shift of up to " + spec.tta +
        " pixel" + (spec.tta > 1 ? "s" : "") + " and averages." : "");
    // Mark the sample digits as this network reads them.
    var counts = { missed: 0, rejected: 0 };
    this.sample.forEach(function (digit, k) {
      var judged = verdict(found.classify(digit.pixels), spec.threshold);
      var wrong = judged.answer !== digit.label;
      var button = self.sampleButtons[k];
      button.className = "ld-sample" + (wrong ? " ld-missed" : "") + (judged.accepted ? "" : " ld-unsure");
      button.title = "test digit #" + digit.index + ", labelled " + digit.label + ": read as " +
        judged.answer + (judged.accepted ? ", accepted" : ", rejected") + (wrong ? " (wrong)" : "");
      if (wrong) counts.missed += 1;
      if (!judged.accepted) counts.rejected += 1;
    });
    this.sampleNote.textContent = "The label is below each digit. For this network, a red frame " +
      "marks a digit it reads wrongly (" + counts.missed + " here), a dashed frame one it rejects (" +
      counts.rejected + " here).";
    this.update();
    this.measureLater();
    return key;
  };

  Demo.prototype.pick = function (k) {
    if (!(k >= 0 && k < this.sample.length)) fail("no sample digit " + k);
    this.shown = this.sample[k].pixels;
    this.shownDigit = this.sample[k];
    this.strokes = [];
    this.update();
  };

  Demo.prototype.benchmark = function (calls, budgetMs) {
    var network = this.network, inputs = this.sample.map(function (d) { return d.pixels; });
    calls = calls || 200;
    budgetMs = budgetMs || 400;
    var start = performance.now(), done = 0, sink = 0;
    while (done < calls && (done < 10 || performance.now() - start < budgetMs)) {
      sink += network.classify(inputs[done % inputs.length])[0];
      done += 1;
    }
    var ms = (performance.now() - start) / done;
    this.timings[network.spec.key] = { ms: ms, calls: done, sink: sink };
    return { ms: ms, calls: done };
  };

  Demo.prototype.measureLater = function () {
    var self = this, key = this.network.spec.key;
    setTimeout(function () {
      if (self.network.spec.key !== key) return;
      var t = self.timings[key] || self.benchmark(200, 400);
      self.timing.textContent = "In this browser, reading one digit with this network takes " +
        (t.ms < 1 ? t.ms.toFixed(3) : t.ms.toFixed(1)) + " ms (mean of " + t.calls +
        " calls" + (self.network.spec.tta ? ", every shifted copy included" : "") + ").";
    }, 50);
  };

  function start() {
    var root = document.getElementById("lenet1demo");
    var source = document.getElementById("lenet1demo-data");
    if (!root || !source) return;
    var demo = new Demo(root, JSON.parse(source.textContent));
    function asArray(values) { return Array.prototype.slice.call(values); }
    window.lenet1demo = {
      ready: true,
      networks: function () { return demo.networks.map(function (n) { return n.spec.key; }); },
      load: function (name) { return demo.select(name); },
      current: function () { return demo.network.spec.key; },
      classify: function (pixels) { demo.network.check(pixels); return asArray(demo.network.classify(pixels)); },
      layers: function (pixels) {
        demo.network.check(pixels);
        var states = demo.network.layers(pixels), result = {};
        Object.keys(states).forEach(function (k) { result[k] = asArray(states[k]); });
        return result;
      },
      input: function () { return asArray(demo.pixels); },
      outputs: function () { return asArray(demo.last.outputs); },
      threshold: function () { return demo.network.spec.threshold; },
      verdict: function (outputs) { return verdict(outputs || demo.last.outputs, demo.network.spec.threshold); },
      show: function (pixels) {
        demo.network.check(pixels);
        demo.shown = Float64Array.from(pixels);
        demo.shownDigit = null;
        demo.strokes = [];
        demo.update();
        return asArray(demo.pixels);
      },
      pick: function (k) { demo.pick(k); return asArray(demo.pixels); },
      sample: function () {
        return demo.sample.map(function (d) { return { index: d.index, label: d.label, kind: d.kind }; });
      },
      strokes: function () { return demo.strokes.length; },
      stroke: function (points) {
        demo.shown = demo.shownDigit = null;
        demo.strokes.push(points.map(function (p) { return [+p[0], +p[1]]; }));
        demo.update();
        return asArray(demo.pixels);
      },
      clear: function () { demo.clear(); },
      undo: function () { demo.undo(); },
      benchmark: function (calls, budgetMs) { return demo.benchmark(calls, budgetMs); }
    };
    root.setAttribute("data-ready", "true");
  }

  Demo.prototype.clear = function () {
    this.strokes = [];
    this.shown = this.shownDigit = null;
    this.update();
  };

  Demo.prototype.undo = function () {
    if (this.shown !== null) { this.shown = this.shownDigit = null; this.strokes = []; }
    else this.strokes.pop();
    this.update();
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
