// trunkline dashboard: appends timeline entries as they arrive (server-sent events).
// Builds DOM nodes with textContent only, so nothing from the store is ever parsed as HTML.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var list = document.getElementById("timeline");
  var status = document.getElementById("live-status");
  if (!main || !list || !window.EventSource) {
    if (status) { status.textContent = "Live updates: unavailable"; }
    return;
  }
  var newestFirst = list.getAttribute("data-order") === "newest-first";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function render(e) {
    var li = el("li", "entry fresh cat-" + e.category);
    li.id = "entry-" + e.key;
    li.setAttribute("data-key", e.key);
    var article = el("article");
    article.setAttribute("aria-labelledby", "title-" + e.key);
    var h3 = el("h3");
    h3.id = "title-" + e.key;
    h3.appendChild(el("span", "badge", e.category.replace("_", " ")));
    h3.appendChild(document.createTextNode(" " + e.title));
    article.appendChild(h3);
    var when = el("p", "when");
    var time = el("time", null, e.at.replace("T", " ").slice(0, 19));
    time.setAttribute("datetime", e.at);
    when.appendChild(time);
    if (e.item_url && e.item_ref) {
      when.appendChild(document.createTextNode(" · "));
      var a = el("a", null, e.item_ref);
      a.href = e.item_url;
      when.appendChild(a);
    }
    article.appendChild(when);
    if (e.message) { article.appendChild(el("p", "message", e.message)); }
    if (e.facts && e.facts.length) {
      var dl = el("dl", "facts");
      e.facts.forEach(function (f) {
        var div = el("div");
        div.appendChild(el("dt", null, f[0]));
        div.appendChild(el("dd", null, f[1]));
        dl.appendChild(div);
      });
      article.appendChild(dl);
    }
    if (e.links && e.links.length) {
      var p = el("p", "links");
      e.links.forEach(function (l, i) {
        if (i) { p.appendChild(document.createTextNode(" · ")); }
        var a = el("a", null, l.label);
        a.href = l.url;
        a.rel = "noopener noreferrer";
        p.appendChild(a);
      });
      article.appendChild(p);
    }
    if (e.tool_calls && e.tool_calls.length) {
      var ul = el("ul", "tools");
      ul.setAttribute("aria-label", "Tool calls");
      e.tool_calls.forEach(function (c) {
        var item = el("li");
        var details = el("details");
        var summary = el("summary");
        summary.appendChild(el("code", null, c.name));
        if (c.refused) { summary.appendChild(el("span", "bad", " refused")); }
        else if (c.is_error) { summary.appendChild(el("span", "bad", " error")); }
        details.appendChild(summary);
        details.appendChild(el("p", "label", "Arguments"));
        details.appendChild(el("pre", null, c.arguments));
        details.appendChild(el("p", "label", "Result"));
        details.appendChild(el("pre", null, c.result));
        item.appendChild(details);
        ul.appendChild(item);
      });
      article.appendChild(ul);
    }
    li.appendChild(article);
    return li;
  }

  // Sections listed in data-refresh (counts, queues, locks, spend, plan, review) are
  // re-read from the server shortly after new entries arrive and every 15 s. The new markup
  // is the server's own autoescaped HTML, parsed inertly (DOMParser runs no scripts); a
  // section holding the keyboard focus is left alone so focus is never lost.
  var refreshIds = (main.getAttribute("data-refresh") || "").split(" ").filter(Boolean);
  var refreshTimer = null;
  function refreshSections() {
    refreshTimer = null;
    if (!refreshIds.length || !window.fetch || !window.DOMParser) { return; }
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        refreshIds.forEach(function (id) {
          var current = document.getElementById(id);
          var replacement = fresh.getElementById(id);
          if (!current || !replacement || current.contains(document.activeElement)) { return; }
          current.replaceChildren.apply(current, Array.prototype.slice.call(replacement.childNodes));
        });
      })
      .catch(function () { /* the next refresh tries again */ });
  }
  function scheduleRefresh(delay) {
    if (refreshTimer === null) { refreshTimer = window.setTimeout(refreshSections, delay); }
  }
  if (refreshIds.length) { window.setInterval(function () { scheduleRefresh(0); }, 15000); }

  var url = main.getAttribute("data-events-url") +
    "after_event=" + encodeURIComponent(list.getAttribute("data-after-event") || "0") +
    "&after_step=" + encodeURIComponent(list.getAttribute("data-after-step") || "0");
  var source = new EventSource(url);
  source.addEventListener("open", function () { status.textContent = "Live updates: on"; });
  source.addEventListener("error", function () { status.textContent = "Live updates: reconnecting…"; });
  source.addEventListener("entry", function (message) {
    var e = JSON.parse(message.data);
    if (document.getElementById("entry-" + e.key)) { return; }
    var empty = document.getElementById("timeline-empty");
    if (empty) { empty.remove(); }
    var node = render(e);
    if (newestFirst) { list.insertBefore(node, list.firstChild); } else { list.appendChild(node); }
    status.textContent = "Live updates: on (last " + e.at.slice(11, 19) + ")";
    scheduleRefresh(500);
  });
})();
