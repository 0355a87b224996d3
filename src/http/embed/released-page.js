/*! portal-gate embed: the <released-page> element.
 *
 *   <script src="https://portal.example.com/embed.js"></script>
 *   <released-page page="/roadmap/" auth-token="pg1...."></released-page>
 *
 * Attributes:
 *   auth-token   a token from your backend; passed as ?auth-token=, like a direct link
 *   page         a path in the portal (default "/")
 *   portal       the gate's origin (default: the origin this script came from)
 *   height       "auto" (the default): the frame's content height, as the frame
 *                script reports it (600px until it does); or a CSS length or a
 *                number of pixels, fixed
 *   min-height   with height="auto": never less than this (CSS length or pixels)
 *   max-height   with height="auto": never more than this; a longer page scrolls
 *   title        the frame's accessible title (default "Portal page")
 *   logout-path  the gate's logout path (default "/auth/logout")
 *   current-page set by the element: the path (and query) the frame is showing
 *
 * Changing auth-token or portal reloads the frame in a new one; changing
 * page navigates it unless it is on that page already (reload() always
 * reloads). When the frame's page changes, the element fires a bubbling,
 * composed "portal-gate:navigate" CustomEvent with detail {path}. When the
 * gate refuses the frame (401/403), it fires "portal-gate:auth-required"
 * with detail {status}: fetch a fresh token and set auth-token again.
 *
 * Removing auth-token (your user signed out) ends the portal session the
 * token opened: the frame goes through the gate's logout path first, so the
 * next person on this browser sees only what the rules make public.
 *
 * Messages from the frame are read only when they come from this element's
 * own frame, from the portal's origin, in the expected shape.
 *
 * Load it as a classic script (not type="module"): the default portal
 * origin comes from document.currentScript.
 */
(() => {
  "use strict";

  const ELEMENT = "released-page";
  const AUTH_REQUIRED = "portal-gate:auth-required";
  const FRAME_REPORT = "portal-gate:frame";
  const NAVIGATE = "portal-gate:navigate";
  /** The frame's height until it reports one (and with no frame script). */
  const FALLBACK_HEIGHT = "600px";
  /** No document is taller: a larger report is not a report. */
  const MAX_REPORTED_HEIGHT = 1e6;
  const MAX_PATH_LENGTH = 4096;
  if (!window.customElements || window.customElements.get(ELEMENT)) {
    return;
  }

  // Captured now: document.currentScript is only set while this runs.
  const current = document.currentScript;
  const scriptOrigin = current && current.src ? new URL(current.src, location.href).origin : null;

  /** The gate's origin, or null when `portal` (or the fallback) is not an http(s) URL. */
  function portalOrigin(attribute) {
    const base = attribute || scriptOrigin || location.href;
    try {
      const url = new URL(base, location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.origin : null;
    } catch (_) {
      return null;
    }
  }

  /**
   * The frame's URL: the portal origin + page, with the token appended to the
   * query. A page that resolves to another origin ("//evil.example/",
   * "javascript:...") is refused, so the token only ever goes to the portal.
   */
  function frameUrl(origin, page, token) {
    let url;
    try {
      url = new URL(page || "/", origin + "/");
    } catch (_) {
      return null;
    }
    if (url.origin !== origin) {
      return null;
    }
    if (token) {
      const query = url.search ? url.search.slice(1) + "&" : "";
      url.search = query + "auth-token=" + encodeURIComponent(token);
    }
    return url.href;
  }

  /** A CSS length from an attribute: a bare number means pixels. */
  function cssLength(value) {
    const text = (value || "").trim();
    return /^\d+(\.\d+)?$/.test(text) ? text + "px" : text;
  }

  /** The path and query of `url` without token parameters, as the frame script reports them. */
  function pageOf(url) {
    const isToken = (name) => name.toLowerCase().replace("_", "-") === "auth-token";
    const kept = [...url.searchParams].filter(([name]) => !isToken(name));
    const query = kept.length === [...url.searchParams].length ? url.search : "?" + new URLSearchParams(kept);
    return url.pathname + (query === "?" ? "" : query);
  }

  /**
   * A frame report, checked: exactly {type, height, path}, a finite height
   * within bounds, and a path on the portal (no other origin, no control
   * characters). Anything else is null.
   */
  function frameReport(data, origin) {
    const keys = Object.keys(data);
    if (keys.length !== 3 || !("height" in data) || !("path" in data)) {
      return null;
    }
    const { height, path } = data;
    if (typeof height !== "number" || !Number.isFinite(height) || height < 0 || height > MAX_REPORTED_HEIGHT) {
      return null;
    }
    if (typeof path !== "string" || path.length > MAX_PATH_LENGTH || !path.startsWith("/") || /[\u0000-\u001f\\]/.test(path)) {
      return null;
    }
    try {
      if (new URL(path, origin + "/").origin !== origin) {
        return null;
      }
    } catch (_) {
      return null;
    }
    return { height: Math.ceil(height), path };
  }

  class ReleasedPage extends HTMLElement {
    static get observedAttributes() {
      return ["auth-token", "page", "portal", "height", "min-height", "max-height", "title", "logout-path"];
    }

    #root = null;
    #frame = null;
    #origin = null;
    #pending = false;
    /** The next load must navigate, even to the page the frame is on. */
    #force = false;
    #hadToken = false;
    /** The height the frame last reported; null until it does. */
    #reported = null;
    /** The page the frame last reported. */
    #current = null;
    #onMessage = (event) => this.#message(event);

    /** A fresh frame and the listener for its messages. */
    #mount() {
      if (!this.#root) {
        this.#root = this.attachShadow({ mode: "open" });
        const style = document.createElement("style");
        style.textContent =
          ":host{display:block}:host([hidden]){display:none}" +
          "iframe{display:block;box-sizing:border-box;width:100%;border:0}";
        this.#root.append(style);
      }
      this.#frame = document.createElement("iframe");
      this.#root.append(this.#frame);
      window.addEventListener("message", this.#onMessage);
      this.#decorate();
    }

    /** Everything #mount set up goes: the listener and the frame. */
    #unmount() {
      window.removeEventListener("message", this.#onMessage);
      if (this.#frame) {
        this.#frame.remove();
        this.#frame = null;
      }
      this.#origin = null;
      this.#reported = null;
    }

    connectedCallback() {
      if (!this.#frame) {
        this.#mount();
      }
      this.#schedule(true);
    }

    disconnectedCallback() {
      this.#unmount();
    }

    attributeChangedCallback(name, oldValue, newValue) {
      if (!this.#frame || !this.isConnected) {
        return; // connectedCallback renders everything
      }
      if (name === "height" || name === "min-height" || name === "max-height" || name === "title") {
        this.#decorate();
      } else if (name === "page") {
        this.#schedule(false);
      } else if ((name === "auth-token" || name === "portal") && oldValue !== newValue) {
        // A new token or portal: a new frame, so nothing of the old one
        // lingers (a late message from it no longer has our frame as source).
        this.#unmount();
        this.#mount();
        this.#schedule(true);
      } else {
        this.#schedule(true);
      }
    }

    /** Reload the frame with the current attributes. */
    reload() {
      this.#schedule(true);
    }

    /** Height, its bounds and the title: no navigation needed. */
    #decorate() {
      const style = this.#frame.style;
      const fixed = this.getAttribute("height");
      const auto = !fixed || fixed.trim().toLowerCase() === "auto";
      if (auto) {
        style.height = this.#reported === null ? FALLBACK_HEIGHT : this.#reported + "px";
        style.minHeight = cssLength(this.getAttribute("min-height"));
        style.maxHeight = cssLength(this.getAttribute("max-height"));
      } else {
        style.height = cssLength(fixed);
        style.minHeight = "";
        style.maxHeight = "";
      }
      this.#frame.title = this.getAttribute("title") || "Portal page";
    }

    /** Coalesce changes made in one task (page and token together) into one load. */
    #schedule(force) {
      this.#force = this.#force || force;
      if (this.#pending) {
        return;
      }
      this.#pending = true;
      queueMicrotask(() => {
        this.#pending = false;
        const force = this.#force;
        this.#force = false;
        this.#load(force);
      });
    }

    #load(force) {
      if (!this.isConnected || !this.#frame) {
        return;
      }
      const origin = portalOrigin(this.getAttribute("portal"));
      const token = this.getAttribute("auth-token");
      let src = origin && frameUrl(origin, this.getAttribute("page"), token);
      if (src && !force && this.#origin === origin && pageOf(new URL(src)) === this.#current) {
        return; // already there: a host writing current-page back into page
      }
      if (src && !token && this.#hadToken) {
        // The token is gone: end the session it opened, then show the page.
        const page = new URL(src);
        const logout = frameUrl(origin, this.getAttribute("logout-path") || "/auth/logout", null);
        src = logout && logout + "?next=" + encodeURIComponent(page.pathname + page.search);
      }
      this.#hadToken = Boolean(token);
      if (!src) {
        console.error("released-page: `page` must be a path on the portal, `portal` an http(s) origin");
        this.#origin = null;
        this.#frame.removeAttribute("src");
        return;
      }
      this.#origin = origin;
      // Setting src navigates even when the value is unchanged, so a token
      // set again is a reload.
      this.#frame.src = src;
    }

    /** Only our own frame, at the portal's origin, in a known shape, is heard. */
    #message(event) {
      const data = event.data;
      if (
        !this.#frame ||
        event.source !== this.#frame.contentWindow ||
        event.origin !== this.#origin ||
        !data ||
        typeof data !== "object"
      ) {
        return;
      }
      if (data.type === AUTH_REQUIRED) {
        const status = data.status === 403 ? 403 : 401;
        this.dispatchEvent(
          new CustomEvent(AUTH_REQUIRED, { bubbles: true, composed: true, detail: { status } })
        );
      } else if (data.type === FRAME_REPORT) {
        const report = frameReport(data, this.#origin);
        if (report) {
          this.#apply(report);
        }
      }
    }

    /** A checked report: the height, and the page when it changed. */
    #apply({ height, path }) {
      this.#reported = height;
      this.#decorate();
      if (path === this.#current) {
        return;
      }
      this.#current = path;
      this.setAttribute("current-page", path);
      this.dispatchEvent(
        new CustomEvent(NAVIGATE, { bubbles: true, composed: true, detail: { path } })
      );
    }
  }

  window.customElements.define(ELEMENT, ReleasedPage);
})();
