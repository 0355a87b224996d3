/*! portal-gate embed: the frame side of <released-page>.
 *
 * In a portal page's template (or inserted by the gate, `[embed]
 * inject_frame_script = true`):
 *
 *   <script src="/embed-frame.js" defer></script>
 *
 * Inside a <released-page> frame it tells the element two things, and
 * nothing else: the document's height in CSS pixels, and the page's path
 * (with its query, less any auth-token parameter). It tells them after
 * load, whenever the document's size changes, and on navigation. Out of a
 * frame it does nothing.
 *
 * It posts only to the origins the gate allows to frame the portal
 * (`[embed] allowed_origins`, served baked in below, and this page's own
 * origin); with that list empty, to any parent ("*"): the message then
 * still carries only the height and the path.
 */
(() => {
  "use strict";

  // Filled in by the gate from the config in force.
  const PARENT_ORIGINS = /*PARENT_ORIGINS*/[];
  const TYPE = "portal-gate:frame";
  const LOADED = Symbol.for("portal-gate.frame-script");

  // Out of a frame, or included twice (a template and the gate both): once.
  if (window.parent === window || window[LOADED]) {
    return;
  }
  Object.defineProperty(window, LOADED, { value: true });

  let sent = { height: -1, path: "" };

  /** The path and query, without any token parameter, and no fragment. */
  function currentPath() {
    const url = new URL(location.href);
    const isToken = (name) => name.toLowerCase().replace("_", "-") === "auth-token";
    if ([...url.searchParams.keys()].some(isToken)) {
      const kept = [...url.searchParams].filter(([name]) => !isToken(name));
      url.search = new URLSearchParams(kept).toString();
    }
    return url.pathname + url.search;
  }

  /**
   * The document's own height: its root element's box, which holds the
   * body's margins. Not scrollHeight, which is never less than the frame.
   */
  function documentHeight() {
    const root = document.documentElement;
    return Math.ceil(Math.max(root.getBoundingClientRect().height, root.offsetHeight));
  }

  /** The parent origins to post to; "*" only when the gate allows any. */
  function targets() {
    if (PARENT_ORIGINS.length === 0) {
      return ["*"];
    }
    const allowed = PARENT_ORIGINS.concat(location.origin);
    const ancestors = location.ancestorOrigins;
    if (ancestors && ancestors.length > 0) {
      return allowed.includes(ancestors[0]) ? [ancestors[0]] : [];
    }
    // No ancestorOrigins (Firefox): the browser delivers to the one that matches.
    return allowed;
  }

  function report() {
    const message = { type: TYPE, height: documentHeight(), path: currentPath() };
    if (message.height === sent.height && message.path === sent.path) {
      return;
    }
    sent = message;
    for (const origin of targets()) {
      window.parent.postMessage(message, origin);
    }
  }

  function start() {
    report();
    if (window.ResizeObserver) {
      const observer = new ResizeObserver(report);
      observer.observe(document.documentElement);
      if (document.body) {
        observer.observe(document.body);
      }
    }
  }

  window.addEventListener("load", report);
  window.addEventListener("pageshow", () => {
    sent = { height: -1, path: "" };
    report();
  });
  // Navigation that keeps the document (history API, fragments).
  window.addEventListener("popstate", report);
  window.addEventListener("hashchange", report);
  if (window.navigation && window.navigation.addEventListener) {
    window.navigation.addEventListener("navigatesuccess", report);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start, { once: true });
  } else {
    start();
  }
})();
