// The public map: alertd's own boundaries as the base map (no tiles: LGWAN has no internet),
// the districts under an order coloured by level, and the table below kept in step.
// Refreshes every 30 s; the answers carry ETags, so an unchanged state costs a 304.
"use strict";
(function () {
  const body = document.body;
  const lang = body.dataset.lang || "ja";
  const status = body.dataset.status || "Actual";
  const areas = (body.dataset.areas || "").split(",").filter(Boolean);
  const texts = JSON.parse(document.getElementById("texts").textContent);
  const COLOURS = { 5: "#0C000C", 4: "#AA00AA", 3: "#FF2800" };
  const APPROXIMATE = "#595959"; // grey, 7:1 on the base map's fill: "area not drawn", not a level
  const REFRESH_MS = 30000;
  const mapEl = document.getElementById("map");
  if (!window.L || !mapEl) return;

  // No zoom or fade animations: calmer for everyone, and what a screenshot shows is what is drawn.
  const map = L.map(mapEl, { attributionControl: false, zoomSnap: 0.25, keyboard: true, zoomAnimation: false, fadeAnimation: false, markerZoomAnimation: false });
  map.setView([36.3, 140.2], 8);
  const base = L.geoJSON(null, {
    style: () => ({ color: "#5a6a78", weight: 1, fillColor: "#f7f7f2", fillOpacity: 1 }),
    onEachFeature: (f, layer) => layer.bindTooltip(f.properties.name, { sticky: true }),
  }).addTo(map);
  const outlines = {}; // municipality code -> its base layer, for districts without a boundary
  let orders = L.layerGroup().addTo(map);
  let etag = null;

  function params(extra) {
    const q = new URLSearchParams(extra);
    if (status !== "Actual") q.set("status", status);
    return q.toString();
  }

  async function loadBase() {
    for (const area of areas) {
      const resp = await fetch("/api/v1/boundaries?area=" + encodeURIComponent(area));
      if (!resp.ok) continue;
      const data = await resp.json();
      base.addData(data);
    }
    base.eachLayer((layer) => { outlines[layer.feature.properties.code] = layer; });
    const bounds = base.getBounds();
    if (bounds.isValid()) map.fitBounds(bounds, { animate: false });
  }

  // As alertd.map_page.place: romanised first in en and ko, the kana reading in やさしい日本語.
  function place(name, romaji, kana) {
    if ((lang === "en" || lang === "ko") && romaji) return romaji + " (" + name + ")";
    if (lang === "ja-easy" && kana) return name + "（" + kana + "）";
    return name;
  }

  // A district drawn as its municipality's outline: a 町域 alertd has no boundary for.
  function approximate(p) { return !p.has_boundary && !p.whole_municipality; }

  function label(p) {
    const town = place(p.municipality_name, p.municipality_romaji, p.municipality_kana);
    const where = town + " " + (p.whole_municipality ? texts.whole : place(p.name, p.name_romaji, p.name_kana));
    return where + " — " + texts.level_n.replace("{n}", p.level) + " " + texts.levels[p.level] + (p.reason ? " (" + ((p.reason_text && p.reason_text[lang]) || p.reason) + ")" : "");
  }

  function draw(collection) {
    orders.remove();
    orders = L.layerGroup();
    // Filled districts first, then the dashed outlines of districts without a boundary on top,
    // so a whole-town level 3 never hides the level 4 of one of its 町域.
    const drawn = [];
    const ordered = collection.features.filter((f) => f.geometry).concat(collection.features.filter((f) => !f.geometry));
    for (const f of ordered) {
      const p = f.properties;
      const colour = COLOURS[p.level] || "#808080";
      let layer = null;
      if (f.geometry) {
        layer = L.geoJSON(f, { style: () => ({ color: "#000", weight: 2, fillColor: colour, fillOpacity: 0.65, className: "district lv" + p.level }) });
      } else if (outlines[p.municipality]) {
        // A 町域 has no boundary of its own: its municipality's outline, dashed grey and unfilled.
        // Never the level's colour: a visitor read a purple town outline as the whole city under
        // level 4. The tooltip, the list and the legend say what the dashed line means.
        layer = L.geoJSON(outlines[p.municipality].feature, { style: () => ({ color: APPROXIMATE, weight: 3, dashArray: "8 6", fill: false, className: "district approximate" }) });
      }
      if (layer) {
        layer.bindTooltip(label(p) + (approximate(p) ? " " + texts.no_boundary : ""), { sticky: true });
        orders.addLayer(layer);
        drawn.push(p.code + ":" + p.level);
      }
    }
    orders.addTo(map);
    mapEl.dataset.drawn = drawn.join(" ");
    const bounds = L.featureGroup(orders.getLayers()).getBounds();
    if (bounds.isValid()) map.fitBounds(bounds, { maxZoom: 11, padding: [24, 24], animate: false });
  }

  function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

  function list(collection) {
    const tbody = document.querySelector("#orders tbody");
    tbody.replaceChildren();
    for (const f of collection.features) {
      const p = f.properties;
      const tr = document.createElement("tr");
      tr.dataset.code = p.code;
      const where = cell(p.whole_municipality ? texts.whole : place(p.name, p.name_romaji, p.name_kana));
      if (approximate(p)) {
        // As the server page writes it (alertd.map_page._rows): the note stays after a refresh.
        const note = document.createElement("small");
        note.textContent = texts.no_boundary;
        where.append(" ", note);
      }
      tr.append(cell(place(p.municipality_name, p.municipality_romaji, p.municipality_kana)), where);
      const level = cell(texts.level_n.replace("{n}", p.level) + " " + texts.levels[p.level]);
      const swatch = document.createElement("span");
      swatch.className = "swatch lv" + p.level;
      swatch.setAttribute("aria-hidden", "true");
      level.prepend(swatch);
      tr.append(level, cell((p.reason_text && p.reason_text[lang]) || p.reason || ""));
      tbody.append(tr);
    }
    document.getElementById("none").hidden = collection.features.length > 0;
    document.getElementById("orders").hidden = collection.features.length === 0; // as the server page: no empty table
    const time = document.querySelector("#updated time");
    time.dateTime = collection.updated;
    // As the server writes it (alertd.map_page.japan_time): the town's own clock.
    time.textContent = new Date(collection.updated).toLocaleString("sv-SE", { timeZone: "Asia/Tokyo" }) + " JST";
  }

  let based = null; // the base map's loading: nothing is drawn before the outlines it needs are known

  async function refresh() {
    try {
      await based;
      const headers = etag ? { "If-None-Match": etag } : {};
      const resp = await fetch("/api/v1/map?" + params({}), { headers: headers, cache: "no-store" });
      if (resp.status === 304 || !resp.ok) return;
      etag = resp.headers.get("ETag");
      const collection = await resp.json();
      draw(collection);
      list(collection);
    } catch (e) {
      // Offline for a moment: keep what is shown, try again at the next refresh.
    }
  }

  based = loadBase();
  refresh();
  setInterval(refresh, REFRESH_MS);
  window.alertdMap = { refresh: refresh, map: map };
})();
