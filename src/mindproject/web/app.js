// The fleet page: plain JavaScript, no framework, no build step, nothing from a CDN.
// Rules this file keeps (docs/security.md): every value from the API reaches the page through
// textContent or setAttribute on a fixed attribute, never parsed as markup; the token lives in
// sessionStorage only (this tab, gone when it closes or on sign-out) and travels in the
// Authorization header, never in a URL.
"use strict";

(() => {
  const TOKEN_KEY = "mindproject.token";
  const ROLE_KEY = "mindproject.role";
  const RESUME_PREFIX = "mindproject.tus:";
  const PAGE_SIZE = 50; // a device's uploads per page (the fleet table has its own choice)
  const CHUNK_BYTES = 4 * 1024 * 1024; // tus PATCH size: a lost connection costs at most this
  const UNITS = { s: 1, m: 60, h: 3600, d: 86400 };

  const $ = (id) => document.getElementById(id);

  // --- elements -----------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  }

  function show(id) {
    for (const view of ["signin-view", "fleet-view", "device-view"]) $(view).hidden = view !== id;
  }

  function notice(text) {
    const box = $("notice");
    box.textContent = text || "";
    box.hidden = !text;
  }

  // --- formatting ---------------------------------------------------------------------------
  function bytes(n) {
    if (n == null) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
  }

  function when(iso) {
    if (!iso) return "never";
    const date = new Date(iso);
    return date.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  }

  function count(n, noun) {
    return `${n} ${noun}${n === 1 ? "" : "s"}`;
  }

  function timeCell(iso) {
    const cell = el("td");
    if (iso) cell.append(el("time", { datetime: iso, title: iso, text: when(iso) }));
    else cell.textContent = "never";
    return cell;
  }

  function seconds(duration) {
    const match = /^(\d+)([smhd])$/.exec(duration);
    return match ? Number(match[1]) * UNITS[match[2]] : 86400;
  }

  // --- the API ------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function role() {
    return sessionStorage.getItem(ROLE_KEY);
  }

  async function api(path, options = {}, bearer = token()) {
    const headers = new Headers(options.headers || {});
    if (bearer) headers.set("Authorization", `Bearer ${bearer}`);
    const response = await fetch(path, { ...options, headers, cache: "no-store" });
    if (!response.ok) {
      let code = "error";
      let message = `${response.status} ${response.statusText}`;
      try {
        const body = await response.json();
        code = body.error.code;
        message = body.error.message;
      } catch (_) {
        // not the JSON error shape (a proxy's page): keep the status line
      }
      if (response.status === 401 && bearer === token()) expired(message);
      throw new ApiError(response.status, code, message);
    }
    return response;
  }

  async function json(path, options) {
    return (await api(path, options)).json();
  }

  const enc = encodeURIComponent;

  // --- sign in and out ----------------------------------------------------------------------
  async function signIn(event) {
    event.preventDefault();
    const error = $("signin-error");
    error.textContent = "";
    const pasted = $("token-input").value.trim().replace(/^Bearer\s+/i, "");
    if (!pasted) {
      error.textContent = "Paste a token first.";
      return;
    }
    let who;
    try {
      who = await (await api("/api/whoami", {}, pasted)).json();
    } catch (exc) {
      error.textContent = exc.status === 401
        ? `The server refused this token: ${exc.message}`
        : `Could not sign in: ${exc.message}`;
      return;
    }
    if (who.role === "device") {
      error.textContent =
        `This is a device token (device ${who.device_id}). The fleet page needs an operator ` +
        "or admin token: make one with `mindproject token create --role operator`.";
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, pasted);
    sessionStorage.setItem(ROLE_KEY, who.role);
    $("token-input").value = "";
    notice("");
    route();
  }

  function signOut() {
    // Every key this page kept: the token, the role, and unfinished uploads' URLs.
    sessionStorage.clear();
    deviceToken = null;
    $("device-token-input").value = "";
    notice("Signed out: the token is gone from this tab.");
    location.hash = "#/";
    route();
  }

  function expired(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ROLE_KEY);
    notice(`Signed out: ${message}`);
    route();
  }

  // --- routing ------------------------------------------------------------------------------
  let carried = ""; // a notice that survives the next navigation (after a delete)

  function route() {
    const signedIn = Boolean(token());
    $("account").hidden = !signedIn;
    if (!signedIn) {
      show("signin-view");
      $("token-input").focus();
      return;
    }
    $("role-badge").textContent = `Signed in: ${role()}`;
    const match = /^#\/device\/(.+)$/.exec(location.hash);
    let deviceId = null;
    try {
      deviceId = match ? decodeURIComponent(match[1]) : null;
    } catch (_) {
      notice("That address names no device: here is the fleet.");
    }
    if (deviceId) openDevice(deviceId);
    else openFleet();
  }

  // --- the fleet ----------------------------------------------------------------------------
  const fleet = { cursors: [null], page: 0 };

  function fleetQuery(cursor) {
    const query = new URLSearchParams({ limit: $("page-size").value, sort: $("sort-input").value });
    const prefix = $("prefix-input").value.trim();
    if (prefix) query.set("prefix", prefix);
    if ($("silent-only").checked) query.set("silent_for", $("silent-input").value);
    if (cursor) query.set("cursor", cursor);
    return query;
  }

  function openFleet() {
    show("fleet-view");
    document.title = "Fleet – MindProject";
    loadSummary();
    loadDevices(fleet.cursors[fleet.page]);
  }

  function tile(label, value, warn) {
    return el(
      "li",
      { className: warn ? "warn" : "", "data-tile": label },
      el("span", { className: "value", text: value }),
      el("span", { className: "label", text: label }),
    );
  }

  async function loadSummary() {
    const tiles = $("tiles");
    const silentFor = $("silent-input").value;
    try {
      const s = await json(`/api/fleet/summary?silent_for=${enc(silentFor)}`);
      tiles.replaceChildren(
        tile("Devices", String(s.devices)),
        tile(`Silent for ${silentFor}`, String(s.silent_devices), s.silent_devices > 0),
        tile("Revoked", String(s.revoked_devices)),
        tile("Uploads, last hour", String(s.uploads_last_hour)),
        tile("Bytes, last hour", bytes(s.bytes_last_hour)),
        tile("Uploads, last day", String(s.uploads_last_day)),
        tile("Bytes, last day", bytes(s.bytes_last_day)),
      );
    } catch (exc) {
      tiles.replaceChildren(el("li", { text: `Summary unavailable: ${exc.message}` }));
    }
  }

  async function loadDevices(cursor) {
    const error = $("fleet-error");
    error.textContent = "";
    const rows = $("device-rows");
    let body;
    try {
      body = await json(`/api/fleet/devices?${fleetQuery(cursor)}`);
    } catch (exc) {
      error.textContent = exc.message;
      rows.replaceChildren();
      return;
    }
    const silentBefore = Date.now() - seconds($("silent-input").value) * 1000;
    rows.replaceChildren(...body.devices.map((device) => deviceRow(device, silentBefore)));
    if (!body.devices.length) {
      rows.append(el("tr", {}, el("td", { colspan: "6", text: "No devices match." })));
    }
    fleet.cursors[fleet.page + 1] = body.next_cursor;
    $("next-page").disabled = !body.next_cursor;
    $("first-page").disabled = fleet.page === 0;
    $("previous-page").disabled = fleet.page === 0;
    $("page-status").textContent =
      `Page ${fleet.page + 1}: ${count(body.devices.length, "device")}`;
  }

  function deviceRow(device, silentBefore) {
    const silent = !device.last_upload_at || Date.parse(device.last_upload_at) < silentBefore;
    const status = el("td");
    if (device.revoked) status.append(el("span", { className: "tag revoked", text: "Revoked" }));
    if (silent) status.append(el("span", { className: "tag silent", text: "Silent" }));
    if (!device.revoked && !silent) status.append(el("span", { className: "tag ok", text: "Reporting" }));
    const link = el("a", { href: `#/device/${enc(device.device_id)}`, text: device.device_id });
    const row = el(
      "tr",
      { "data-device": device.device_id },
      el("th", { scope: "row" }, link),
      timeCell(device.last_upload_at),
      el("td", { className: "num", text: device.uploads == null ? "–" : String(device.uploads) }),
      el("td", { className: "num", text: bytes(device.bytes) }),
      el("td", { className: "num", text: bytes(device.last_size) }),
      status,
    );
    row.classList.toggle("silent", silent);
    row.classList.toggle("revoked", device.revoked);
    return row;
  }

  function searchFleet(event) {
    if (event) event.preventDefault();
    fleet.cursors = [null];
    fleet.page = 0;
    openFleet();
  }

  // --- a device -----------------------------------------------------------------------------
  let current = null; // the device on screen
  let uploadsCursor = null;
  let deviceToken = null; // an operator's pasted device token, for uploads: memory only

  async function openDevice(deviceId) {
    show("device-view");
    current = { id: deviceId, revoked: false };
    document.title = `${deviceId} – MindProject`;
    $("device-title").textContent = deviceId;
    $("device-error").textContent = "";
    $("upload-status").textContent = "";
    const admin = role() === "admin";
    $("admin-actions").hidden = !admin;
    $("device-token-field").hidden = admin;
    $("upload-rows").replaceChildren();
    uploadsCursor = null;
    await Promise.all([loadStatus(), loadUploads(false), loadChart()]);
  }

  async function loadStatus() {
    const line = $("device-status");
    try {
      const query = new URLSearchParams({ prefix: current.id, limit: "1" });
      const body = await json(`/api/fleet/devices?${query}`);
      const row = body.devices.find((d) => d.device_id === current.id);
      if (!row) {
        line.textContent = "No uploads stored.";
        current.revoked = false;
      } else {
        current.revoked = row.revoked;
        const parts = [];
        if (row.revoked) parts.push(`Revoked since ${when(row.revoked_at)}`);
        parts.push(`last upload ${when(row.last_upload_at)}`);
        if (row.uploads != null) parts.push(`${count(row.uploads, "upload")}, ${bytes(row.bytes)} stored`);
        line.textContent = parts.join(" · ");
      }
    } catch (exc) {
      line.textContent = `Status unavailable: ${exc.message}`;
    }
    $("revoke-button").textContent = current.revoked ? "Unrevoke tokens" : "Revoke tokens";
  }

  async function loadUploads(more) {
    const rows = $("upload-rows");
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (more && uploadsCursor) query.set("cursor", uploadsCursor);
    try {
      const body = await json(`/api/devices/${enc(current.id)}/uploads?${query}`);
      const made = body.uploads.map(uploadRow);
      if (more) rows.append(...made);
      else rows.replaceChildren(...made);
      uploadsCursor = body.next_cursor;
    } catch (exc) {
      if (exc.status === 404) {
        rows.replaceChildren(el("tr", {}, el("td", { colspan: "7", text: "No uploads." })));
      } else {
        $("device-error").textContent = exc.message;
      }
      uploadsCursor = null;
    }
    $("more-uploads").hidden = !uploadsCursor;
  }

  function uploadRow(upload) {
    const button = el("button", {
      type: "button",
      text: "Download",
      "aria-label": `Download version ${upload.version}`,
    });
    button.addEventListener("click", () => download(upload, button));
    return el(
      "tr",
      { "data-version": upload.version },
      timeCell(upload.uploaded_at),
      el("td", { className: "num", text: bytes(upload.size), title: `${upload.size} bytes` }),
      el("td", { className: "name", text: upload.filename ?? "" }),
      el("td", { text: upload.content_type ?? "" }),
      el("td", { className: "mono hash", text: upload.sha256 }),
      el("td", { className: "mono", text: upload.version }),
      el("td", {}, button),
    );
  }

  async function download(upload, button) {
    button.disabled = true;
    try {
      const path = `/api/devices/${enc(current.id)}/uploads/${enc(upload.version)}?encoding=raw`;
      const blob = await (await api(path)).blob();
      const url = URL.createObjectURL(blob);
      const name = (upload.filename || `${current.id}-${upload.version}.bin`).split(/[\\/]/).pop();
      const link = el("a", { href: url, download: name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (exc) {
      $("device-error").textContent = `Download failed: ${exc.message}`;
    } finally {
      button.disabled = false;
    }
  }

  async function loadChart() {
    const box = $("chart");
    try {
      const body = await json(`/api/devices/${enc(current.id)}/activity?bucket=1h`);
      drawChart(box, body.buckets);
    } catch (exc) {
      box.replaceChildren();
      $("chart-summary").textContent =
        exc.status === 404 ? "No uploads in the last 7 days." : `Chart unavailable: ${exc.message}`;
    }
  }

  function drawChart(box, buckets) {
    // Drawn at the box's own width, so labels keep their size on a phone and on a wide screen.
    const width = Math.max(300, Math.round(box.clientWidth) || 840);
    const height = 180;
    const pad = { left: 34, bottom: 22, top: 8 };
    const max = Math.max(1, ...buckets.map((b) => b.uploads));
    const total = buckets.reduce((sum, b) => sum + b.uploads, 0);
    const plot = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `Uploads per hour over the last 7 days: ${total} in all, at most ${max} in an hour`,
    });
    const inner = height - pad.bottom - pad.top;
    const step = (width - pad.left) / Math.max(1, buckets.length);
    plot.append(svg("line", { class: "axis", x1: pad.left, x2: width, y1: height - pad.bottom, y2: height - pad.bottom }));
    const top = svg("text", { x: 2, y: pad.top + 10 });
    top.textContent = String(max);
    const zero = svg("text", { x: 2, y: height - pad.bottom });
    zero.textContent = "0";
    plot.append(top, zero);
    buckets.forEach((bucket, i) => {
      if (bucket.uploads > 0) {
        const h = (bucket.uploads / max) * inner;
        const rect = svg("rect", {
          class: "bar-rect",
          x: pad.left + i * step,
          y: height - pad.bottom - h,
          width: Math.max(1, step - 1),
          height: h,
        });
        const title = svg("title");
        title.textContent = `${when(bucket.start)}: ${bucket.uploads} uploads, ${bytes(bucket.bytes)}`;
        rect.append(title);
        plot.append(rect);
      }
      const start = new Date(bucket.start);
      if (start.getUTCHours() === 0) {
        const label = svg("text", { x: pad.left + i * step + 2, y: height - 6 });
        label.textContent = start.toLocaleDateString(undefined, { month: "short", day: "numeric" });
        plot.append(label);
      }
    });
    box.replaceChildren(plot);
    $("chart-summary").textContent = `${count(total, "upload")} in the last 7 days.`;
  }

  async function toggleRevocation() {
    const button = $("revoke-button");
    button.disabled = true;
    try {
      await api(`/api/revocations/${enc(current.id)}`, { method: current.revoked ? "DELETE" : "PUT" });
      notice(current.revoked ? `Tokens of ${current.id} work again.` : `Tokens of ${current.id} are revoked.`);
      await loadStatus();
    } catch (exc) {
      $("device-error").textContent = exc.message;
    } finally {
      button.disabled = false;
    }
  }

  function askDelete() {
    const dialog = $("confirm-dialog");
    $("confirm-title").textContent = `Delete every upload of ${current.id}?`;
    $("confirm-text").textContent =
      `This removes all stored uploads of device ${current.id}. It cannot be undone.`;
    $("confirm-input").value = "";
    $("confirm-ok").disabled = true;
    dialog.returnValue = "";
    dialog.showModal();
    $("confirm-input").focus();
  }

  async function confirmDelete() {
    if ($("confirm-dialog").returnValue !== "confirm" || $("confirm-input").value !== current.id) {
      return;
    }
    try {
      const response = await json(`/api/devices/${enc(current.id)}`, { method: "DELETE" });
      carried = `Deleted ${count(response.deleted_uploads, "upload")} of ${current.id}.`;
      location.hash = "#/";
    } catch (exc) {
      $("device-error").textContent = `Delete failed: ${exc.message}`;
    }
  }

  // --- uploads: a small tus 1.0 client (creation, HEAD to resume, PATCH in chunks) ----------
  function b64(text) {
    const utf8 = new TextEncoder().encode(text);
    let binary = "";
    for (const byte of utf8) binary += String.fromCharCode(byte);
    return btoa(binary);
  }

  function patch(url, bearer, offset, chunk, onProgress) {
    // XMLHttpRequest, not fetch: only it reports upload progress.
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PATCH", url);
      xhr.setRequestHeader("Authorization", `Bearer ${bearer}`);
      xhr.setRequestHeader("Tus-Resumable", "1.0.0");
      xhr.setRequestHeader("Upload-Offset", String(offset));
      xhr.setRequestHeader("Content-Type", "application/offset+octet-stream");
      xhr.upload.onprogress = (event) => onProgress(event.loaded);
      xhr.onload = () => {
        if (xhr.status === 204) resolve(Number(xhr.getResponseHeader("Upload-Offset")));
        else {
          let message = `${xhr.status}`;
          try {
            message = JSON.parse(xhr.responseText).error.message;
          } catch (_) {
            // no JSON body
          }
          reject(new ApiError(xhr.status, "tus", message));
        }
      };
      xhr.onerror = () => reject(new ApiError(0, "network", "the connection failed"));
      xhr.send(chunk);
    });
  }

  async function tusOffset(url, bearer) {
    const response = await api(url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" } }, bearer);
    return Number(response.headers.get("Upload-Offset"));
  }

  async function tusUpload(deviceId, file, bearer, onProgress) {
    const resumeKey = `${RESUME_PREFIX}${deviceId}:${file.name}:${file.size}:${file.lastModified}`;
    let url = sessionStorage.getItem(resumeKey);
    let offset = 0;
    if (url) {
      try {
        offset = await tusOffset(url, bearer); // resume where the last try stopped
      } catch (_) {
        url = null; // expired or removed: start again
      }
    }
    if (!url) {
      const metadata = [`filename ${b64(file.name)}`];
      if (file.type) metadata.push(`filetype ${b64(file.type)}`);
      const created = await api(`/api/devices/${enc(deviceId)}/resumable`, {
        method: "POST",
        headers: {
          "Tus-Resumable": "1.0.0",
          "Upload-Length": String(file.size),
          "Upload-Metadata": metadata.join(","),
        },
      }, bearer);
      url = created.headers.get("Location");
      sessionStorage.setItem(resumeKey, url);
      offset = 0;
    }
    onProgress(offset);
    let failures = 0;
    while (offset < file.size) {
      const chunk = file.slice(offset, Math.min(file.size, offset + CHUNK_BYTES));
      try {
        const start = offset;
        offset = await patch(url, bearer, offset, chunk, (loaded) => onProgress(start + loaded));
        failures = 0;
        onProgress(offset);
      } catch (exc) {
        failures += 1;
        if (failures > 3 || (exc.status >= 400 && exc.status < 500 && exc.status !== 409 && exc.status !== 423)) {
          throw exc;
        }
        await new Promise((done) => setTimeout(done, 500 * failures));
        offset = await tusOffset(url, bearer); // ask the server where to go on
      }
    }
    sessionStorage.removeItem(resumeKey);
  }

  async function startUpload(event) {
    event.preventDefault();
    const file = $("file-input").files[0];
    const status = $("upload-status");
    if (!file) {
      status.textContent = "Choose a file first.";
      return;
    }
    let bearer = token();
    if (role() !== "admin") {
      deviceToken = $("device-token-input").value.trim().replace(/^Bearer\s+/i, "") || deviceToken;
      if (!deviceToken) {
        status.textContent = "Operators upload with the device's own token: paste it above.";
        return;
      }
      bearer = deviceToken;
    }
    const bar = $("upload-progress");
    const percent = $("upload-percent");
    const button = $("upload-button");
    const progress = (sent) => {
      const value = file.size ? Math.floor((100 * sent) / file.size) : 100;
      bar.value = value;
      percent.textContent = `${value} %`;
    };
    button.disabled = true;
    status.textContent = `Uploading ${file.name}…`;
    progress(0);
    try {
      await tusUpload(current.id, file, bearer, progress);
      progress(file.size);
      status.textContent = `Uploaded ${file.name} (${bytes(file.size)}).`;
      await Promise.all([loadUploads(false), loadStatus(), loadChart()]);
    } catch (exc) {
      status.textContent = `Upload stopped: ${exc.message}. Upload the same file again to resume.`;
    } finally {
      button.disabled = false;
    }
  }

  // --- wiring -------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", signOut);
    $("fleet-controls").addEventListener("submit", searchFleet);
    for (const id of ["sort-input", "silent-input", "silent-only", "page-size"]) {
      $(id).addEventListener("change", () => searchFleet());
    }
    $("next-page").addEventListener("click", () => {
      fleet.page += 1;
      loadDevices(fleet.cursors[fleet.page]);
    });
    $("previous-page").addEventListener("click", () => {
      fleet.page = Math.max(0, fleet.page - 1);
      loadDevices(fleet.cursors[fleet.page]);
    });
    $("first-page").addEventListener("click", () => {
      fleet.page = 0;
      loadDevices(null);
    });
    $("more-uploads").addEventListener("click", () => loadUploads(true));
    $("revoke-button").addEventListener("click", toggleRevocation);
    $("delete-button").addEventListener("click", askDelete);
    $("confirm-input").addEventListener("input", () => {
      $("confirm-ok").disabled = $("confirm-input").value !== current.id;
    });
    $("confirm-dialog").addEventListener("close", confirmDelete);
    $("upload-form").addEventListener("submit", startUpload);
    window.addEventListener("hashchange", () => {
      notice(carried); // a message for the page we go to, else none
      carried = "";
      route();
      $("main").focus();
    });
    route();
  });
})();
