/* The Diagnostic tool's re-sync: follow the queued run until it ends, then reload.
 *
 * The page carries the run's JSON address in data-poll-url only while the run has not
 * ended, so the reload (which the server renders with the outcome and Mailchimp's fresh
 * state) stops the loop. Texts are written with textContent only.
 */
(function () {
  "use strict";

  var POLL_MS = 1000;
  var MAX_POLL_MS = 10000;
  var STALL_S = 30; // still queued after this long: no worker may be running

  var card = document.getElementById("resync");
  if (!card) { return; }
  var url = card.getAttribute("data-poll-url");
  if (!url) { return; }
  var stateText = document.getElementById("resync-state");
  var badge = document.querySelector("#resync-badge .mc-badge");
  var problem = document.getElementById("resync-poll-error");
  var started = Date.now();
  var delay = POLL_MS;

  // The sentences, in the page's language (a JSON data block rendered by the server).
  var dataBlock = document.getElementById("mcsync-i18n");
  var T = dataBlock ? JSON.parse(dataBlock.textContent) : {};
  function t(key, values) {
    return String(T[key] || key).replace(/%\((\w+)\)s/g, function (_m, name) {
      return values && values[name] !== undefined ? String(values[name]) : "";
    });
  }
  var WORDS = { queued: t("queued"), running: t("running") };

  function say(element, sentence) {
    if (element) { element.textContent = sentence; }
  }

  function setBadge(status, label) {
    if (!badge) { return; }
    badge.className = "mc-badge mc-badge-" + String(status).replace(/[^a-z]/g, "");
    badge.textContent = label || status;
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (!response.ok) {
            if (response.status === 404 || response.status === 403) { url = null; }
            throw new Error(data.error || t("server_answered", { status: response.status }));
          }
          return data;
        });
      })
      .then(function (data) {
        problem.hidden = true;
        delay = POLL_MS;
        setBadge(data.status, data.status_label);
        if (data.ended) {
          say(stateText, t("done"));
          window.location.reload();
          return;
        }
        var sentence = WORDS[data.status] || data.status_label || "";
        if (data.status === "queued" && (Date.now() - started) / 1000 > STALL_S) {
          sentence += " " + t("stalled", { seconds: STALL_S });
        }
        say(stateText, sentence);
        window.setTimeout(poll, delay);
      })
      .catch(function (error) {
        say(problem, t("poll_failed", { error: error.message }));
        problem.hidden = false;
        if (!url) { say(problem, error.message); return; }
        delay = Math.min(delay * 2, MAX_POLL_MS);
        window.setTimeout(poll, delay);
      });
  }

  window.setTimeout(poll, 300);
}());
