// The console's map: alertd's own boundaries (no tiles), the orders in force coloured by level,
// the districts a desk may pick (those with a boundary of their own) and a preview's outline.
const COLOURS = { 5: "#0C000C", 4: "#AA00AA", 3: "#FF2800" };

export class DeskMap {
  constructor(element, onPick) {
    this.element = element;
    this.onPick = onPick;
    this.map = L.map(element, { attributionControl: false, zoomSnap: 0.25, zoomAnimation: false, fadeAnimation: false });
    this.map.setView([36.3, 140.2], 8);
    this.base = L.geoJSON(null, {
      style: () => ({ color: "#5a6a78", weight: 1, fillColor: "#f7f7f2", fillOpacity: 1 }),
      onEachFeature: (f, layer) => layer.bindTooltip(f.properties.name, { sticky: true }),
    }).addTo(this.map);
    this.outlines = {};
    this.orders = L.layerGroup().addTo(this.map);
    this.pickable = L.layerGroup().addTo(this.map);
    this.pickLayers = {};
    this.preview = L.layerGroup().addTo(this.map);
    // A sticky tooltip closes when the pointer leaves its shape; when the shape is redrawn or
    // covered under a still pointer (a refresh, a preview) or the pointer leaves the map fast,
    // it never did, and 「常総市」 stayed on the map. Closed on leaving and on every redraw.
    element.addEventListener("mouseleave", () => this.closeTooltips());
  }

  closeTooltips() {
    this.map.eachLayer((layer) => { if (layer.closeTooltip) layer.closeTooltip(); });
  }

  async showBase(areas) {
    this.base.clearLayers();
    for (const area of areas) {
      const resp = await fetch("/api/v1/boundaries?area=" + encodeURIComponent(area));
      if (resp.ok) this.base.addData((await resp.json()).features.filter((f) => f.properties.level !== "layer"));
    }
    this.base.eachLayer((layer) => { this.outlines[layer.feature.properties.code] = layer; });
    this.fit(this.base);
  }

  fit(layer, maxZoom) {
    const bounds = layer.getBounds ? layer.getBounds() : L.featureGroup(layer.getLayers()).getBounds();
    if (bounds.isValid()) this.map.fitBounds(bounds, { maxZoom: maxZoom || 12, padding: [16, 16], animate: false });
  }

  showOrders(collection, noBoundary) {
    this.closeTooltips();
    this.orders.clearLayers();
    const drawn = [];
    const features = collection.features.filter((f) => f.geometry).concat(collection.features.filter((f) => !f.geometry));
    for (const f of features) {
      const p = f.properties;
      const colour = COLOURS[p.level] || "#808080";
      let layer = null;
      if (f.geometry) {
        layer = L.geoJSON(f, { style: () => ({ color: "#000", weight: 2, fillColor: colour, fillOpacity: 0.6, className: "order lv" + p.level }) });
      } else if (this.outlines[p.municipality]) {
        // A 町域 without a boundary: its town's outline dashed grey, unfilled — "area not drawn",
        // as on the public map, never the level's colour (it read as the whole town under the order).
        layer = L.geoJSON(this.outlines[p.municipality].feature, { style: () => ({ color: "#595959", weight: 3, dashArray: "8 6", fill: false, className: "order approximate" }) });
      }
      if (layer) {
        const note = !p.has_boundary && !p.whole_municipality && noBoundary ? " " + noBoundary : "";
        layer.bindTooltip(p.municipality_name + " " + p.name + " — " + p.level + note, { sticky: true });
        this.orders.addLayer(layer);
        drawn.push(p.code + ":" + p.level);
      }
    }
    this.element.dataset.orders = drawn.join(" ");
  }

  // The districts of a municipality that have a boundary of their own: click to pick.
  async showPickable(muni) {
    this.closeTooltips();
    this.clearPickable();
    const resp = await fetch("/api/v1/boundaries?area=" + encodeURIComponent(muni));
    if (!resp.ok) return [];
    const features = (await resp.json()).features.filter((f) => f.properties.code !== muni && f.geometry);
    for (const f of features) {
      const name = f.properties.name;
      const layer = L.geoJSON(f, { style: () => ({ color: "#003a70", weight: 2, dashArray: "4 3", fillColor: "#8fb8de", fillOpacity: 0.35, className: "pickable" }) });
      layer.eachLayer((path) => path.on("click", () => this.onPick(name)));
      layer.bindTooltip(name, { sticky: true });
      this.pickable.addLayer(layer);
      this.pickLayers[name] = layer;
    }
    if (features.length) this.fit(L.featureGroup(this.pickable.getLayers()), 13);
    else if (this.outlines[muni]) this.fit(this.outlines[muni], 12);
    this.element.dataset.pickable = features.map((f) => f.properties.name).join(" ");
    return features.map((f) => f.properties.name);
  }

  markPicked(names) {
    for (const [name, layer] of Object.entries(this.pickLayers)) {
      const on = names.includes(name);
      layer.setStyle({ fillColor: on ? "#003a70" : "#8fb8de", fillOpacity: on ? 0.6 : 0.35, weight: on ? 3 : 2 });
    }
    this.element.dataset.picked = names.join(" ");
  }

  clearPickable() {
    this.pickable.clearLayers();
    this.pickLayers = {};
    this.element.dataset.pickable = "";
  }

  // The preview's outline in its level's colour (a level 4 order outlined purple), black without one.
  // A 町域 without a boundary (drawn with its town's outline) is dashed grey, as on the public map
  // and in 現在の発令: the whole town in the level's colour read as the whole town under the order.
  showPreview(geojson, level) {
    this.closeTooltips();
    this.preview.clearLayers();
    if (!geojson || !geojson.features) return;
    const colour = COLOURS[level] || "#000";
    const lv = level ? " lv" + level : "";
    const layer = L.geoJSON(geojson, { filter: (f) => !!f.geometry, style: (f) => (f.properties && f.properties.approximate
      ? { color: "#595959", weight: 3, dashArray: "8 6", fill: false, className: "preview approximate" + lv }
      : { color: colour, weight: 4, dashArray: "2 6", fill: false, className: "preview" + lv }) });
    this.preview.addLayer(layer);
    this.fit(layer, 13);
  }

  clearPreview() {
    this.closeTooltips();
    this.preview.clearLayers();
  }
}
