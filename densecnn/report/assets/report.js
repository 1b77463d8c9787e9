// densecnn report: video/plot/list sync and the image grid. Data: the #run-data JSON block, written
// from the run's predictions.jsonl (items packed as [class, score, x1, y1, x2, y2, track, rle?]).
"use strict";
(() => {
  const DATA = JSON.parse(document.getElementById("run-data").textContent);
  const CLASSES = DATA.classes;
  const COLORS = DATA.colors;
  const BOXES = DATA.kind === "detections" || DATA.kind === "instances";
  const SVGNS = "http://www.w3.org/2000/svg";

  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const swatch = (c) => `<span class="swatch" style="background:${COLORS[c]}"></span>`;

  function itemsTable(items) {
    if (!items.length) return "<tr><td>nothing</td></tr>";
    const value = DATA.kind === "segments" ? "fraction" : "score";
    const head = BOXES ? `<tr><th>class</th><th>${value}</th><th>box x1 y1 x2 y2</th><th>track</th></tr>`
      : `<tr><th>class</th><th>${value}</th></tr>`;
    const rows = items.map((d) => {
      const cells = [`<td>${swatch(d[0])}${esc(CLASSES[d[0]])}</td>`, `<td class="num">${d[1].toFixed(3)}</td>`];
      if (BOXES) cells.push(`<td>${d.slice(2, 6).map((v) => v.toFixed(0)).join(" ")}</td>`, `<td>${d[6] >= 0 ? d[6] : ""}</td>`);
      return `<tr>${cells.join("")}</tr>`;
    });
    return head + rows.join("");
  }

  // ---- videos: the frame shown (its JSONL timestamp) drives the list and the plots' playhead
  for (const section of document.querySelectorAll("section.video-part")) {
    const frames = DATA.videos[Number(section.dataset.part)].frames;
    const times = frames.map((f) => f.t);
    const video = section.querySelector("video");
    const plots = [...section.querySelectorAll("svg.plot")];
    const list = section.querySelector("table.items");
    const index = section.querySelector(".frame-index");
    const time = section.querySelector(".frame-time");
    let shown = -2;

    // The last frame whose timestamp is at or before t (frames hold from their timestamp on).
    const frameAt = (t) => {
      let lo = 0, hi = times.length - 1;
      if (hi < 0 || t < times[0]) return 0;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (times[mid] <= t + 2e-6) lo = mid; else hi = mid - 1;  // video pts are truncated to µs
      }
      return lo;
    };
    const show = (t) => {
      for (const svg of plots) {
        const x0 = +svg.dataset.x0, x1 = +svg.dataset.x1, t1 = +svg.dataset.t1;
        const x = x0 + (x1 - x0) * Math.min(Math.max(t / t1, 0), 1);
        const head = svg.querySelector(".playhead");
        head.setAttribute("x1", x); head.setAttribute("x2", x);
      }
      const i = frameAt(t);
      if (i === shown || !frames.length) return;
      shown = i;
      index.textContent = frames[i].f;
      time.textContent = frames[i].t.toFixed(3);
      list.innerHTML = itemsTable(frames[i].d);
    };
    const seek = (t) => {
      const target = times.length ? times[frameAt(t)] : t;
      if (video) video.currentTime = target;
      show(target);
    };
    if (video) {
      if ("requestVideoFrameCallback" in video) {
        const onFrame = (_now, meta) => { show(meta.mediaTime); video.requestVideoFrameCallback(onFrame); };
        video.requestVideoFrameCallback(onFrame);
      }
      video.addEventListener("timeupdate", () => show(video.currentTime));
      for (const event of ["seeked", "pause", "ended"]) video.addEventListener(event, () => show(video.currentTime));
    }
    for (const svg of plots) {
      svg.addEventListener("click", (ev) => {
        const pt = svg.createSVGPoint();
        pt.x = ev.clientX; pt.y = ev.clientY;
        const p = pt.matrixTransform(svg.getScreenCTM().inverse());
        const x0 = +svg.dataset.x0, x1 = +svg.dataset.x1, t1 = +svg.dataset.t1;
        seek(Math.min(Math.max((p.x - x0) / (x1 - x0), 0), 1) * t1);
      });
    }
    for (const row of section.querySelectorAll("tr[data-t]")) {
      row.addEventListener("click", () => seek(Number(row.dataset.t)));
    }
    show(0);
  }

  // ---- images: filter, page, lazy thumbnails, the full view with boxes and masks
  const grid = document.getElementById("grid");
  if (!grid) return;
  const PAGE = 60;
  const images = DATA.images;
  const fClass = document.getElementById("f-class");
  const fScore = document.getElementById("f-score");
  let shownImages = [];
  let page = 0;

  function passes(d, cls, min) { return (cls < 0 || d[0] === cls) && d[1] >= min; }

  function overlay(image, min, labels) {
    const svg = document.createElementNS(SVGNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${image.w} ${image.h}`);
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    if (!BOXES || !image.overlay) return svg;
    const stroke = Math.max(image.w, image.h) / 300;
    for (const d of image.d) {
      if (d[1] < min) continue;
      const r = document.createElementNS(SVGNS, "rect");
      r.setAttribute("x", d[2]); r.setAttribute("y", d[3]);
      r.setAttribute("width", Math.max(d[4] - d[2], 0)); r.setAttribute("height", Math.max(d[5] - d[3], 0));
      r.setAttribute("fill", "none"); r.setAttribute("stroke", COLORS[d[0]]); r.setAttribute("stroke-width", stroke);
      svg.appendChild(r);
      if (labels) {
        const t = document.createElementNS(SVGNS, "text");
        t.setAttribute("x", d[2]); t.setAttribute("y", Math.max(d[3] - 3, 12)); t.setAttribute("class", "label");
        t.setAttribute("fill", COLORS[d[0]]);
        t.textContent = `${CLASSES[d[0]]} ${d[1].toFixed(2)}`;
        svg.appendChild(t);
      }
    }
    return svg;
  }

  function caption(image) {
    if (BOXES) return `${image.d.length} ${DATA.kind}`;
    const top = image.d[0];
    return top ? `${CLASSES[top[0]]} ${top[1].toFixed(2)}` : "";
  }

  function applyFilter() {
    const cls = Number(fClass.value), min = Number(fScore.value);
    document.getElementById("f-score-v").textContent = min.toFixed(2);
    shownImages = [];
    images.forEach((image, i) => {
      if ((cls < 0 && min === 0) || image.d.some((d) => passes(d, cls, min))) shownImages.push(i);
    });
    page = 0;
    renderPage();
  }

  function renderPage() {
    const pages = Math.max(1, Math.ceil(shownImages.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    const min = Number(fScore.value);
    const frag = document.createDocumentFragment();
    for (const i of shownImages.slice(page * PAGE, (page + 1) * PAGE)) {
      const image = images[i];
      const fig = document.createElement("figure");
      fig.className = "thumb";
      fig.dataset.index = i;
      const box = document.createElement("div");
      box.className = "frame";
      if (image.src) {
        const img = document.createElement("img");
        img.loading = "lazy"; img.decoding = "async"; img.alt = image.s; img.src = image.src;
        box.appendChild(img);
      } else {
        box.insertAdjacentHTML("beforeend", '<div class="missing">image file not found</div>');
      }
      box.appendChild(overlay(image, min, false));
      fig.appendChild(box);
      fig.insertAdjacentHTML("beforeend", `<figcaption title="${esc(image.s)}">${esc(image.s)} · ${esc(caption(image))}</figcaption>`);
      fig.addEventListener("click", () => openViewer(i));
      frag.appendChild(fig);
    }
    grid.replaceChildren(frag);
    document.getElementById("page").textContent = `page ${page + 1} / ${pages}`;
    document.getElementById("f-count").textContent = `${shownImages.length} of ${images.length} images`;
  }

  // COCO compressed RLE (pycocotools' string form): 6-bit chunks, deltas from the count two back.
  function rleCounts(s) {
    const counts = [];
    let p = 0;
    while (p < s.length) {
      let x = 0, k = 0, more = true;
      while (more) {
        const c = s.charCodeAt(p) - 48;
        x |= (c & 0x1f) << (5 * k);
        more = (c & 0x20) !== 0;
        p++; k++;
        if (!more && (c & 0x10)) x |= -1 << (5 * k);
      }
      if (counts.length > 2) x += counts[counts.length - 2];
      counts.push(x);
    }
    return counts;
  }

  function drawMasks(canvas, image, min) {
    canvas.width = image.w; canvas.height = image.h;
    const ctx = canvas.getContext("2d");
    const pixels = ctx.createImageData(image.w, image.h);
    for (const d of image.d) {
      const rle = d[7];
      if (!rle || d[1] < min) continue;
      const [h, w] = rle.size;
      const hex = COLORS[d[0]];
      const rgb = [1, 3, 5].map((o) => parseInt(hex.slice(o, o + 2), 16));
      let pos = 0, on = false;
      for (const n of rleCounts(rle.counts)) {
        if (on) {
          for (let q = pos; q < pos + n; q++) {  // column-major, as COCO stores masks
            const y = q % h, x = (q - y) / h;
            if (x >= image.w || y >= image.h) continue;
            const o = 4 * (y * image.w + x);
            pixels.data[o] = rgb[0]; pixels.data[o + 1] = rgb[1]; pixels.data[o + 2] = rgb[2]; pixels.data[o + 3] = 110;
          }
        }
        pos += n; on = !on;
      }
    }
    ctx.putImageData(pixels, 0, 0);
  }

  function openViewer(i) {
    const image = images[i];
    const min = Number(fScore.value);
    const stage = document.getElementById("viewer-stage");
    stage.replaceChildren();
    stage.style.aspectRatio = `${image.w} / ${image.h}`;
    stage.style.width = `min(70vw, ${image.w}px, calc(85vh * ${image.w / Math.max(image.h, 1)}))`;
    if (image.src) {
      const img = document.createElement("img");
      img.src = image.src; img.alt = image.s;
      stage.appendChild(img);
    }
    if (image.overlay && DATA.kind === "instances") {
      const canvas = document.createElement("canvas");
      drawMasks(canvas, image, min);
      stage.appendChild(canvas);
    }
    stage.appendChild(overlay(image, min, true));
    document.getElementById("viewer-title").textContent = image.s;
    document.getElementById("viewer-items").innerHTML = itemsTable(image.d.filter((d) => d[1] >= min));
    document.getElementById("viewer").showModal();
  }

  fClass.addEventListener("change", applyFilter);
  fScore.addEventListener("input", applyFilter);
  document.getElementById("prev").addEventListener("click", () => { page--; renderPage(); });
  document.getElementById("next").addEventListener("click", () => { page++; renderPage(); });
  applyFilter();
})();
