// AutoGuardRails dashboard: live updates and countdowns. The pages work without this script;
// it only refreshes <main> when the server says something changed (Server-Sent Events), or
// every 30 s when events are not available, and keeps the countdowns moving.
(function () {
  "use strict";
  var body = document.body;
  var main = document.getElementById("main");
  var status = document.getElementById("live-status");
  var liveUrl = body.getAttribute("data-live");
  var pollSeconds = parseInt(body.getAttribute("data-poll") || "30", 10);
  var pending = false;
  var again = false;
  var poller = null;

  function say(text) {
    if (status) { status.textContent = text; }
  }

  function span(seconds) {
    var s = Math.floor(seconds);
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60), r = s % 60;
    if (d > 0) { return d + "d " + h + "h " + m + "m"; }
    if (h > 0) { return h + "h " + m + "m " + r + "s"; }
    if (m > 0) { return m + "m " + r + "s"; }
    return r + "s";
  }

  function tick() {
    var now = Date.now();
    var items = document.querySelectorAll("time[data-countdown]");
    for (var i = 0; i < items.length; i++) {
      var t = items[i];
      var at = Date.parse(t.getAttribute("datetime"));
      if (isNaN(at)) { continue; }
      var left = (at - now) / 1000;
      t.textContent = left > 0 ? "in " + span(left) : span(-left) + " ago";
    }
  }

  function refresh() {
    if (!main) { return; }
    if (pending) { again = true; return; }
    pending = true;
    fetch(window.location.href, {
      headers: { "X-Dashboard-Fragment": "main", "Accept": "text/html" },
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (r) {
      if (r.status === 401 || r.redirected) { window.location.reload(); return null; }
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    }).then(function (html) {
      if (html === null) { return; }
      var focused = document.activeElement && document.activeElement.id;
      main.innerHTML = html;
      if (focused) {
        var again_ = document.getElementById(focused);
        if (again_) { again_.focus(); }
      }
      tick();
      showCopies();
      say("Updated " + new Date().toLocaleTimeString());
    }).catch(function (e) {
      say("Update failed (" + e.message + "); retrying");
    }).then(function () {
      pending = false;
      if (again) { again = false; refresh(); }
    });
  }

  function poll() {
    if (poller === null) {
      poller = window.setInterval(refresh, pollSeconds * 1000);
      say("Refreshing every " + pollSeconds + " s");
    }
  }

  if (liveUrl && window.EventSource) {
    var source = new EventSource(liveUrl);
    source.addEventListener("open", function () { say("Live"); });
    source.addEventListener("change", refresh);
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) { poll(); } else { say("Reconnecting"); }
    });
  } else if (body.hasAttribute("data-poll")) {
    poll();
  }

  function showCopies() {
    var copies = document.querySelectorAll("button[data-copy]");
    for (var i = 0; i < copies.length; i++) { copies[i].hidden = false; }
  }
  showCopies();
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (target && navigator.clipboard) {
      navigator.clipboard.writeText(target.textContent).then(function () {
        button.textContent = "Copied";
      }, function () { button.textContent = "Select and copy"; });
    }
  });

  tick();
  window.setInterval(tick, 1000);
})();
