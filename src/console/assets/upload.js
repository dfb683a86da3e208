// Drag-and-drop uploads on the Files page: several files at once through tus-js-client
// against the API's tus endpoint (/v1/uploads), authenticated by the session cookie and
// the X-CSRF-Token header. Each file gets a progress bar with its rate and time left; a
// network drop is retried and resumed where the server stands, and a page reload
// resumes when the same file is dropped again (tus-js-client's fingerprint in
// localStorage). Once the bytes are in, the status follows the live events of
// /v1/events (uploaded → processing → completed / duplicate / virus found), with a
// toast for each notification, and the file table refreshes — no reload.
"use strict";

(function () {
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file-input");
  const list = document.getElementById("uploads");
  if (!zone || !input || !list || !window.tus) return;

  const CHUNK = 1024 * 1024;
  const LABELS = { virus_failed: "virus found", receiving: "uploading" };
  const rowsByFile = new Map(); // file id → row
  const rowsByUpload = new Map(); // tus upload id → row
  const seen = new Map(); // file id → latest status, for rows that learn their id late

  function label(status) {
    return LABELS[status] || status;
  }

  function human(bytes) {
    const units = ["B", "kB", "MB", "GB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit++;
    }
    return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
  }

  function duration(seconds) {
    if (!isFinite(seconds)) return "…";
    if (seconds < 60) return Math.ceil(seconds) + " s";
    return Math.floor(seconds / 60) + " min " + Math.ceil(seconds % 60) + " s";
  }

  let refresh = null;
  function filesChanged() {
    clearTimeout(refresh);
    refresh = setTimeout(function () {
      document.body.dispatchEvent(new Event("files-changed"));
    }, 300);
  }

  function setStatus(row, status) {
    const badge = row.querySelector("[data-status]");
    badge.textContent = label(status);
    badge.className = "status status-" + status;
    row.dataset.state = status;
  }

  function addRow(file) {
    const row = document.createElement("li");
    row.className = "upload";
    row.dataset.name = file.name;
    row.innerHTML =
      '<div class="upload-head"><span class="upload-name"></span> ' +
      '<span class="status" data-status></span></div>' +
      '<progress max="100" value="0"></progress>' +
      '<div class="upload-meta muted" data-meta></div>';
    row.querySelector(".upload-name").textContent = file.name;
    row.querySelector("progress").setAttribute("aria-label", "Upload of " + file.name);
    setStatus(row, "receiving");
    list.appendChild(row);
    return row;
  }

  function knowFile(row, fileId) {
    if (!fileId || row.dataset.fileId) return;
    row.dataset.fileId = fileId;
    rowsByFile.set(fileId, row);
    if (seen.has(fileId)) setStatus(row, seen.get(fileId));
    else setStatus(row, "uploaded");
  }

  function start(file) {
    const row = addRow(file);
    const bar = row.querySelector("progress");
    const meta = row.querySelector("[data-meta]");
    let began = null;
    let from = 0;
    let retries = 0;
    const upload = new window.tus.Upload(file, {
      endpoint: "/v1/uploads",
      chunkSize: CHUNK,
      retryDelays: [0, 500, 1000, 2000, 4000, 8000, 15000],
      metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
      headers: { "X-CSRF-Token": window.Chronicle.csrf() },
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onShouldRetry: function (err) {
        const response = err.originalResponse;
        const status = response ? response.getStatus() : 0;
        const retry = !(status >= 400 && status < 500 && ![409, 423, 429].includes(status));
        if (retry) {
          retries++;
          row.dataset.retries = String(retries);
          meta.textContent = "Connection lost; resuming…";
        }
        return retry;
      },
      onProgress: function (sent, total) {
        const now = performance.now();
        if (began === null) {
          began = now;
          from = sent;
          row.dataset.from = String(sent);
        }
        const elapsed = (now - began) / 1000;
        const rate = elapsed > 0 ? (sent - from) / elapsed : 0;
        const left = rate > 0 ? (total - sent) / rate : Infinity;
        bar.value = total ? (sent / total) * 100 : 0;
        row.dataset.sent = String(sent);
        meta.textContent =
          Math.floor(bar.value) + " % · " + human(sent) + " of " + human(total) +
          " · " + human(rate) + "/s · " + duration(left) + " left";
      },
      onAfterResponse: function (req, res) {
        const id = res.getHeader("Chronicle-File-Id");
        if (id) knowFile(row, id);
        const url = upload.url;
        if (url) rowsByUpload.set(url.split("/").pop(), row);
      },
      onSuccess: function () {
        bar.value = 100;
        meta.textContent = human(file.size) + " sent" + (retries ? " (resumed " + retries + "×)" : "");
        if (!row.dataset.fileId) setStatus(row, "uploaded");
        filesChanged();
      },
      onError: function (err) {
        setStatus(row, "failed");
        meta.textContent = "Upload failed: " + (err && err.message ? err.message.split("\n")[0] : err);
        window.Chronicle.toast("Upload of " + file.name + " failed.", "error");
      },
    });
    upload.findPreviousUploads().then(function (previous) {
      if (previous.length > 0) {
        row.dataset.resumed = "true";
        upload.resumeFromPreviousUpload(previous[0]);
      }
      upload.start();
    });
  }

  function startAll(files) {
    for (const file of files) start(file);
    unfinished();
  }

  zone.addEventListener("dragover", function (e) {
    e.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", function () {
    zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    zone.classList.remove("dragging");
    startAll(e.dataTransfer.files);
  });
  zone.addEventListener("keydown", function (e) {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", function () {
    startAll(input.files);
    input.value = "";
  });

  // Uploads a reload interrupted: the browser cannot reopen the files by itself.
  function unfinished() {
    const note = document.getElementById("unfinished");
    const storage = window.tus.defaultOptions.urlStorage;
    if (!note || !storage) return;
    storage.findAllUploads().then(function (uploads) {
      const names = uploads.map(function (u) { return u.metadata && u.metadata.filename; }).filter(Boolean);
      const active = new Set(Array.from(list.children).map(function (r) { return r.dataset.name; }));
      const waiting = names.filter(function (n) { return !active.has(n); });
      note.hidden = waiting.length === 0;
      note.textContent = "Unfinished uploads: " + waiting.join(", ") + ". Drop the same files again to continue where they stopped.";
    });
  }
  unfinished();

  // Live status: the person's own notification stream, authenticated by the cookie.
  const events = new EventSource("/v1/events");
  function onStatus(event) {
    const data = JSON.parse(event.data);
    if (!data.file_id) return;
    seen.set(data.file_id, data.status);
    const row = rowsByFile.get(data.file_id);
    if (row) setStatus(row, data.status);
    filesChanged();
  }
  events.addEventListener("version_status", onStatus);
  events.addEventListener("notification", function (event) {
    onStatus(event);
    const data = JSON.parse(event.data);
    const bad = data.kind === "virus_found" || data.kind === "processing_failed";
    window.Chronicle.toast(data.message, bad ? "error" : "ok");
  });
  events.addEventListener("upload_progress", function (event) {
    const data = JSON.parse(event.data);
    const row = rowsByUpload.get(data.upload_id);
    if (row && data.file_id) knowFile(row, data.file_id);
  });
})();
