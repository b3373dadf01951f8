// Two small SVG bar charts, drawn by hand (no library to vendor). Each bar carries its value in
// data attributes, which is also how the browser test reads what the chart shows.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    return el;
  }

  function titled(el, text) {
    const title = svg("title", {});
    title.textContent = text;
    el.append(title);
    return el;
  }

  // Horizontal bars, one per item: [{label, value}], in the given order.
  function horizontal(container, items, onClick) {
    container.replaceChildren();
    if (items.length === 0) {
      container.textContent = "No messages.";
      return;
    }
    // Drawn at the container's own pixel width, so text keeps its size.
    const row = 22, labelWidth = 120, width = Math.max(300, container.clientWidth || 460);
    const max = Math.max(...items.map((i) => i.value));
    const chart = svg("svg", { viewBox: `0 0 ${width} ${row * items.length}`, role: "img", class: "bars" });
    items.forEach((item, n) => {
      const barWidth = Math.max(1, ((width - labelWidth - 50) * item.value) / max);
      const g = svg("g", { class: "bar", "data-label": item.label, "data-count": item.value });
      const label = svg("text", { x: 0, y: n * row + 15 });
      label.textContent = item.label;
      const rect = titled(svg("rect", { x: labelWidth, y: n * row + 3, width: barWidth, height: row - 6 }),
        `${item.label}: ${item.value}`);
      const value = svg("text", { x: labelWidth + barWidth + 4, y: n * row + 15 });
      value.textContent = String(item.value);
      g.append(label, rect, value);
      if (onClick) g.addEventListener("click", () => onClick(item));
      chart.append(g);
    });
    container.append(chart);
  }

  // Vertical bars placed on a time axis: [{start (ISO), count}], ascending, gaps allowed (only
  // non-empty buckets come from the API). `bucketMs` is the bucket length.
  function timeline(container, buckets, bucketMs, formatTime) {
    container.replaceChildren();
    if (buckets.length === 0) {
      container.textContent = "No messages in this range.";
      return;
    }
    const width = Math.max(300, container.clientWidth || 900), height = 160, axis = 20;
    const first = Date.parse(buckets[0].start);
    const span = Date.parse(buckets[buckets.length - 1].start) + bucketMs - first;
    const slot = Math.max(1, (width * bucketMs) / span);
    const max = Math.max(...buckets.map((b) => b.count));
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height + axis}`, role: "img", class: "timeline" });
    for (const b of buckets) {
      const x = ((Date.parse(b.start) - first) * width) / span;
      const h = Math.max(1, (height * b.count) / max);
      const rect = titled(svg("rect", {
        class: "bucket", x, y: height - h, width: Math.max(1, Math.min(slot * 0.9, 48)), height: h,
        "data-start": b.start, "data-count": b.count,
      }), `${formatTime(b.start)} (UTC ${b.start}): ${b.count}`);
      chart.append(rect);
    }
    const left = svg("text", { x: 0, y: height + 15 });
    left.textContent = formatTime(buckets[0].start);
    const right = svg("text", { x: width, y: height + 15, "text-anchor": "end" });
    right.textContent = formatTime(buckets[buckets.length - 1].start) + ` (max ${max})`;
    chart.append(left, right);
    container.append(chart);
  }

  window.Charts = { horizontal, timeline };
})();
