/* The "Export users" window: preview, Synchronize, then follow the run until it ends.
 *
 * Everything shown comes from the server's JSON and is written with textContent, never
 * as HTML: addresses and Mailchimp's messages are untrusted. The run lives in the
 * database, so closing the window only stops this page from polling; opening it again
 * asks the server for the running export and picks it up where it is.
 */
(function () {
  "use strict";

  var POLL_MS = 1000;
  var CLOSE_AFTER_S = 6;
  // No movement for this long: hint that no worker may be running. Longer than the
  // longest wait between two polls of a batch (batch_sync.MAX_POLL_DELAY, 20 s): each
  // poll renews its batch's lease, which counts as movement (see phase).
  var STALL_S = 30;

  // The sentences, in the page's language (a JSON data block rendered by the server).
  var dataBlock = document.getElementById("mcsync-i18n");
  var T = dataBlock ? JSON.parse(dataBlock.textContent) : {};
  var LANG = document.documentElement.lang || "en";
  var plurals = window.Intl && Intl.PluralRules ? new Intl.PluralRules(LANG) : null;

  // t("key", {name: value}) fills %(name)s; a plural entry picks its form by values.num.
  function t(key, values) {
    var entry = T[key];
    if (entry === undefined) { entry = key; }
    if (typeof entry === "object") {
      var n = values && typeof values.num === "number" ? values.num : 0;
      var form = plurals ? plurals.select(n) : (n === 1 ? "one" : "other");
      entry = entry[form] || entry.other;
      values = Object.assign({}, values, { num: fmt(n) });
    }
    return String(entry).replace(/%\((\w+)\)s/g, function (_m, name) {
      return values && values[name] !== undefined ? String(values[name]) : "";
    });
  }

  var button = document.getElementById("export-users");
  var modal = document.getElementById("export-window");
  if (!button || !modal) { return; }
  var dialog = modal.querySelector(".mc-dialog");
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var urls = {
    window: button.getAttribute("data-window-url"),
    start: button.getAttribute("data-start-url"),
    progress: button.getAttribute("data-progress-url")
  };

  var session = 0;        // bumped on every open/close: late answers of an old one are dropped
  var pollTimer = null;
  var closeTimer = null;
  var runEnded = false;   // the page's "Last export" is stale once a run ended
  var followed = false;   // ... and once a run was started or followed: it is the last one
  var lastMove = { marker: "", at: 0 };
  var batchRows = {};     // seq -> {row, key}

  function $(id) { return document.getElementById(id); }
  function fmt(n) { return Number(n || 0).toLocaleString(LANG); }
  function text(id, value) { $(id).textContent = value; }

  function show(view) {
    var views = modal.querySelectorAll("[data-view]");
    for (var i = 0; i < views.length; i++) {
      views[i].hidden = views[i].getAttribute("data-view") !== view;
    }
  }

  function request(method, url, body) {
    var options = {
      method: method,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.error || t("server_answered", { status: response.status }));
          error.data = data;
          throw error;
        }
        return data;
      });
    });
  }

  // --- opening and closing -------------------------------------------------------------

  function open() {
    session += 1;
    var mine = session;
    clearTimers();
    runEnded = false;
    followed = false;
    modal.hidden = false;
    document.body.classList.add("mc-modal-open");
    $("xw-target").hidden = true;
    show("loading");
    dialog.focus();
    request("GET", urls.window).then(function (data) {
      if (mine !== session) { return; }
      setTarget(data.list);
      $("xw-unreachable").hidden = !data.unreachable;
      text("xw-unreachable", data.unreachable || "");
      if (data.run) {
        followRun(data.run, false);
      } else if (!data.list) {
        message(t("choose_audience"), true);
      } else if (data.error) {
        message(data.error, false);
      } else {
        showPreferences(data);
      }
    }).catch(function (error) {
      if (mine === session) { message(error.message, false); }
    });
  }

  function close() {
    if (modal.hidden) { return; }
    session += 1;
    clearTimers();
    modal.hidden = true;
    document.body.classList.remove("mc-modal-open");
    button.focus();
    // A run started or followed here is what the page's "Last export" must now show
    // (running, or ended): the server renders it, so reload rather than patch the card.
    if (runEnded || followed) { window.location.reload(); }
  }

  function clearTimers() {
    if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
    if (closeTimer) { clearInterval(closeTimer); closeTimer = null; }
  }

  function setTarget(list) {
    if (!list) { $("xw-target").hidden = true; return; }
    text("xw-list-name", list.name || list.id);
    text("xw-list-id", list.id);
    $("xw-target").hidden = false;
  }

  function message(sentence, needsList) {
    text("xw-message", sentence);
    $("xw-settings-link").hidden = !needsList;
    show("message");
  }

  // --- preferences -----------------------------------------------------------------------

  function showPreferences(data) {
    var counts = data.counts;
    text("xw-to-export", fmt(counts.to_export));
    text("xw-excluded", fmt(counts.excluded));
    text("xw-invalid", fmt(counts.invalid));
    text("xw-duplicates", fmt(counts.duplicates));
    text("xw-rows", fmt(counts.rows));
    text("xw-max", fmt(data.max_batch_size));
    var input = $("xw-batch-size");
    input.max = data.max_batch_size;
    input.value = data.batch_size;
    input.setAttribute("data-to-export", counts.to_export);
    // The required merge field check: say what Mailchimp would refuse, offer the way on.
    var merge = data.merge_fields || {};
    var problem = merge.message && !merge.ok;
    $("xw-merge").hidden = !merge.message;
    text("xw-merge-message", merge.message || "");
    $("xw-skip-merge").checked = false;
    $("xw-skip-merge").parentNode.hidden = !problem;
    setError(null);
    updateBatchCount();
    $("xw-synchronize").disabled = false;
    show("prefs");
    input.focus();
  }

  function updateBatchCount() {
    var input = $("xw-batch-size");
    var size = parseInt(input.value, 10);
    var total = parseInt(input.getAttribute("data-to-export"), 10) || 0;
    var max = Number(input.max) || Infinity;
    // Only a size the server would accept gets a batch count beside it.
    text("xw-batch-count", size > 0 && size <= max && String(size) === input.value.trim()
      ? t("batch_count", { num: Math.ceil(total / size) })
      : "");
  }

  function setError(sentence) {
    var box = $("xw-error");
    box.hidden = !sentence;
    box.textContent = sentence || "";
    $("xw-size-field").classList.toggle("has-error", !!sentence);
    if (sentence) { $("xw-batch-size").setAttribute("aria-invalid", "true"); }
    else { $("xw-batch-size").removeAttribute("aria-invalid"); }
  }

  function synchronize(event) {
    event.preventDefault();
    var input = $("xw-batch-size");
    var size = Number(input.value);
    var max = Number(input.max);
    if (!Number.isInteger(size) || size < 1 || size > max) {
      setError(t("batch_size_range", { max: fmt(max) }));
      input.focus();
      return;
    }
    setError(null);
    var mine = session;
    $("xw-synchronize").disabled = true;
    var body = { batch_size: size, skip_merge_validation: $("xw-skip-merge").checked };
    request("POST", urls.start, body).then(function (data) {
      if (mine !== session) { return; }
      followRun(data.progress, !data.created);
    }).catch(function (error) {
      if (mine !== session) { return; }
      $("xw-synchronize").disabled = false;
      setError(error.message);
    });
  }

  // --- progress --------------------------------------------------------------------------

  function followRun(progress, joined) {
    followed = true;
    $("xw-joined").hidden = !joined;
    $("xw-summary").hidden = true;
    resetBatches();
    lastMove = { marker: "", at: Date.now() };
    show("progress");
    render(progress);
  }

  function poll(runId) {
    var mine = session;
    request("GET", urls.progress.replace(/\/0\.json$/, "/" + runId + ".json")).then(function (data) {
      if (mine === session) { render(data); }
    }).catch(function (error) {
      if (mine !== session) { return; }
      text("xw-phase", t("lost_contact", { error: error.message }));
      pollTimer = setTimeout(function () { poll(runId); }, POLL_MS * 3);
    });
  }

  function render(p) {
    var batches = p.batches || [];
    $("xw-progress").setAttribute("data-run-id", String(p.id));
    // The counts are the server's (the run's own counters); ``batches`` is only a window
    // (the first few to come, those in flight, the last few ended), so the answer costs
    // the same for 10 batches and 2,000. Rows already shown stay, updated when seen.
    var counts = p.batch_counts || { done: 0, active: 0, waiting: 0, failed: 0 };
    for (var i = 0; i < batches.length; i++) {
      renderBatch(batches[i]);
    }
    $("xw-no-batches").hidden = (p.batch_count || batches.length) > 0;
    var chips = $("xw-chips").querySelectorAll("[data-count]");
    for (var j = 0; j < chips.length; j++) {
      chips[j].textContent = fmt(counts[chips[j].getAttribute("data-count")]);
    }

    var percent = Math.max(0, Math.min(100, Number(p.percent) || 0));
    if (!p.ended && p.total > 0) {
      // The run counts a batch once it is done; the operations Mailchimp already
      // processed in the others move the bar too, so it never sits still for a batch.
      var inFlight = p.in_flight_operations || 0;
      percent = Math.max(percent, Math.min(99.9, 100 * (p.done + inFlight) / p.total));
    }
    // Before the first address is through, a percentage would sit at 0.0 % for seconds:
    // the bar moves without a figure until there is a true one.
    var starting = !p.ended && percent <= 0;
    $("xw-bar").classList.toggle("is-indeterminate", starting);
    $("xw-bar-fill").style.width = starting ? "" : percent + "%";
    if (starting) { $("xw-bar").removeAttribute("aria-valuenow"); }
    else { $("xw-bar").setAttribute("aria-valuenow", String(percent)); }
    $("xw-bar").classList.toggle("is-failed", p.status === "failed");
    text("xw-percent", starting ? "" : percentText(percent));
    // While the shop is still being read the total grows: show what is done, not "0 of N".
    text("xw-counts", p.planning_done || p.ended
      ? t("done_of_total", { done: fmt(p.done), total: fmt(p.total) })
      : t("done_so_far", { num: p.done }));
    text("xw-rate", rateLine(p));
    runBadge($("xw-run-badge"), p.status);
    text("xw-phase", phase(p, p.batch_count || batches.length));

    if (p.ended) {
      finish(p);
    } else {
      pollTimer = setTimeout(function () { poll(p.id); }, POLL_MS);
    }
  }

  function phase(p, batchCount) {
    // Movement is a worker's, not only a batch recorded: Mailchimp's progress in the
    // batches it runs, and the leases every step of a batch renews (a poll that finds
    // the batch still waiting at Mailchimp too). A large batch, or one queued behind
    // others at Mailchimp, can take longer than STALL_S with no batch recorded.
    var marker = [
      p.status, p.done, p.total, batchCount, p.in_flight_operations, p.leased_until
    ].join("/");
    if (marker !== lastMove.marker) { lastMove = { marker: marker, at: Date.now() }; }
    var stalled = (Date.now() - lastMove.at) / 1000 > STALL_S;
    if (p.ended) {
      return t("run_ended", { id: p.id, time: duration(p.elapsed) });
    }
    if (stalled) { return t("stalled", { seconds: STALL_S }); }
    if (p.status === "queued") { return t("waiting_worker"); }
    if (!p.planning_done) {
      return t("reading", { addresses: fmt(p.total), batches: fmt(batchCount) });
    }
    return t("sending", { num: batchCount });
  }

  function rateLine(p) {
    var parts = [];
    if (p.rate > 0) { parts.push(t("rate", { rate: fmt(Math.round(p.rate)) })); }
    // seconds_left stays null until the server can estimate it honestly (see runs.py).
    if (!p.ended && p.seconds_left) { parts.push(t("left", { time: duration(p.seconds_left) })); }
    if (p.ended || !p.seconds_left) { parts.push(t("elapsed", { time: duration(p.elapsed) })); }
    return "· " + parts.join(" · ");
  }

  function percentText(percent) {
    return Number(percent).toLocaleString(LANG, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) + "\u00a0%";
  }

  function duration(seconds) {
    var s = Math.max(0, Math.round(Number(seconds) || 0));
    if (s < 60) { return t("seconds", { seconds: s }); }
    var m = Math.floor(s / 60);
    if (m < 60) { return t("minutes", { minutes: m, seconds: (s % 60 < 10 ? "0" : "") + (s % 60) }); }
    return t("hours", { hours: Math.floor(m / 60), minutes: (m % 60 < 10 ? "0" : "") + (m % 60) });
  }

  var RUN_LABELS = T.run_labels || {};

  function runBadge(el, status) {
    el.className = "mc-badge mc-badge-" + (RUN_LABELS[status] ? status : "waiting");
    el.textContent = RUN_LABELS[status] || String(status);
  }

  // --- batch rows: created once, updated in place (a big run has thousands) -----------------

  function resetBatches() {
    batchRows = {};
    var body = $("xw-batches").tBodies[0];
    while (body.firstChild) { body.removeChild(body.firstChild); }
  }

  var BATCH_LABELS = T.batch_labels || {};

  function batchDetail(b) {
    var parts = [];
    if (b.status === "processing") {
      parts.push(b.finished_operations
        ? t("processed", { done: fmt(b.finished_operations), total: fmt(b.total_operations || b.size) })
        : t("queued_at_mailchimp"));
    }
    if (b.attempts > 1 && b.status !== "done") { parts.push(t("attempt", { num: b.attempts })); }
    return parts.join(" · ");
  }

  function cell(row, className) {
    var td = document.createElement("td");
    if (className) { td.className = className; }
    row.appendChild(td);
    return td;
  }

  function renderBatch(b) {
    var key = [b.status, b.finished_operations, b.total_operations, b.created, b.updated,
      b.errors, b.attempts, b.last_error, b.size, b.first, b.last].join("|");
    var entry = batchRows[b.seq];
    if (entry && entry.key === key) { return; }
    if (!entry) {
      var row = document.createElement("tr");
      var state = document.createElement("td");
      entry = batchRows[b.seq] = {
        row: row,
        key: "",
        seq: cell(row, "mc-num"),
        badge: document.createElement("span"),
        detail: document.createElement("div"),
        error: document.createElement("div"),
        size: null, first: null, last: null, created: null, updated: null, errors: null
      };
      row.appendChild(state);
      entry.detail.className = "mc-batch-detail";
      entry.error.className = "mc-batch-error";
      state.appendChild(entry.badge);
      state.appendChild(entry.detail);
      state.appendChild(entry.error);
      entry.size = cell(row, "mc-num");
      entry.first = cell(row, "mc-address");
      entry.last = cell(row, "mc-address");
      entry.created = cell(row, "mc-num");
      entry.updated = cell(row, "mc-num");
      entry.errors = cell(row, "mc-num");
      // In seq order: the window may show a batch after others that follow it.
      var body = $("xw-batches").tBodies[0], next = null;
      for (var r = body.firstChild; r; r = r.nextSibling) {
        if (Number(r.getAttribute("data-seq")) > b.seq) { next = r; break; }
      }
      body.insertBefore(row, next);
    }
    entry.row.setAttribute("data-seq", String(b.seq));
    entry.row.setAttribute("data-status", b.status);
    entry.seq.textContent = String(b.seq);
    entry.badge.className = "mc-badge mc-badge-" + (BATCH_LABELS[b.status] ? b.status : "waiting");
    entry.badge.textContent = BATCH_LABELS[b.status] || String(b.status);
    entry.detail.textContent = batchDetail(b);
    entry.error.textContent = b.status === "done" ? "" : (b.last_error_text || b.last_error || "");
    entry.size.textContent = fmt(b.size);
    entry.first.textContent = b.first || "";
    entry.first.title = b.first || "";
    entry.last.textContent = b.last || "";
    entry.last.title = b.last || "";
    entry.created.textContent = fmt(b.created);
    entry.updated.textContent = fmt(b.updated);
    entry.errors.textContent = fmt(b.errors);
    entry.errors.classList.toggle("mc-bad", b.errors > 0);
    entry.key = key;
  }

  // --- the end ---------------------------------------------------------------------------

  function finish(p) {
    runEnded = true;
    var ok = p.status === "finished";
    runBadge($("xw-summary-badge"), p.status);
    var refused = p.errors > 0 ? " " + t("refused", { num: p.errors }) : "";
    text("xw-summary-text", (ok ? t("complete") : t("not_complete")) + refused);
    text("xs-exported", fmt(p.created + p.updated));
    text("xs-created", fmt(p.created));
    text("xs-updated", fmt(p.updated));
    text("xs-archived", fmt(p.archived));
    text("xs-excluded", fmt(p.excluded));
    text("xs-invalid", fmt(p.invalid));
    text("xs-duplicates", fmt(p.duplicates));
    text("xs-errors", fmt(p.errors));
    $("xs-errors-item").classList.toggle("mc-stat-bad", p.errors > 0);
    $("xw-run-message").hidden = !p.message;
    text("xw-run-message", p.message_text || p.message || "");
    $("xw-summary").hidden = false;
    var left = CLOSE_AFTER_S;
    var tick = function () {
      text("xw-countdown", t("closes_in", { seconds: left }));
      if (left <= 0) { close(); }
      left -= 1;
    };
    tick();
    closeTimer = setInterval(tick, 1000);
  }

  // --- wiring ----------------------------------------------------------------------------

  button.addEventListener("click", open);
  $("xw-prefs").addEventListener("submit", synchronize);
  $("xw-batch-size").addEventListener("input", function () { setError(null); updateBatchCount(); });
  modal.addEventListener("click", function (event) {
    // A click on the dimmed backdrop (outside the dialog) or on a close button.
    if (event.target === modal || event.target.closest("[data-close]")) { close(); }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !modal.hidden) { close(); }
  });
  // The page renders the button disabled (autocomplete="off": Firefox would otherwise
  // restore the enabled state on a reload): this script is deferred, and a click before
  // it ran would do nothing at all. The button works once everything above is wired.
  button.disabled = false;
})();
