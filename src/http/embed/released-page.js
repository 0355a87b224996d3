/*! portal-gate embed: the <released-page> element.
 *
 *   <script src="https://portal.example.com/embed.js"></script>
 *   <released-page page="/roadmap/" auth-token="pg1...."></released-page>
 *
 * Attributes:
 *   auth-token  a token from your backend; passed as ?auth-token=, like a direct link
 *   page        a path in the portal (default "/")
 *   portal      the gate's origin (default: the origin this script came from)
 *   height      a CSS length or a number of pixels (default 600px)
 *   title       the frame's accessible title (default "Portal page")
 *   logout-path the gate's logout path (default "/auth/logout")
 *
 * Changing auth-token, page or portal reloads the frame. When the gate
 * refuses the frame (401/403), the element fires a bubbling, composed
 * "portal-gate:auth-required" CustomEvent with detail {status}: fetch a
 * fresh token and set auth-token again.
 *
 * Removing auth-token (your user signed out) ends the portal session the
 * token opened: the frame goes through the gate's logout path first, so the
 * next person on this browser sees only what the rules make public.
 *
 * Load it as a classic script (not type="module"): the default portal
 * origin comes from document.currentScript.
 */
(() => {
  "use strict";

  const ELEMENT = "released-page";
  const AUTH_REQUIRED = "portal-gate:auth-required";
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

  function cssHeight(value) {
    if (!value) {
      return "600px";
    }
    return /^\d+(\.\d+)?$/.test(value.trim()) ? value.trim() + "px" : value;
  }

  class ReleasedPage extends HTMLElement {
    static get observedAttributes() {
      return ["auth-token", "page", "portal", "height", "title", "logout-path"];
    }

    #frame = null;
    #origin = null;
    #pending = false;
    #hadToken = false;
    #onMessage = (event) => this.#message(event);

    /** Build the shadow tree once; the frame is reused, only navigated. */
    #setup() {
      if (this.#frame) {
        return;
      }
      const root = this.attachShadow({ mode: "open" });
      const style = document.createElement("style");
      style.textContent =
        ":host{display:block}:host([hidden]){display:none}" +
        "iframe{display:block;box-sizing:border-box;width:100%;border:0}";
      this.#frame = document.createElement("iframe");
      root.append(style, this.#frame);
    }

    connectedCallback() {
      this.#setup();
      window.addEventListener("message", this.#onMessage);
      this.#decorate();
      this.#schedule();
    }

    disconnectedCallback() {
      window.removeEventListener("message", this.#onMessage);
    }

    attributeChangedCallback(name) {
      if (!this.#frame || !this.isConnected) {
        return; // connectedCallback renders everything
      }
      if (name === "height" || name === "title") {
        this.#decorate();
      } else {
        this.#schedule();
      }
    }

    /** Reload the frame with the current attributes. */
    reload() {
      this.#schedule();
    }

    /** Height and title: no navigation needed. */
    #decorate() {
      this.#frame.style.height = cssHeight(this.getAttribute("height"));
      this.#frame.title = this.getAttribute("title") || "Portal page";
    }

    /** Coalesce changes made in one task (page and token together) into one load. */
    #schedule() {
      if (this.#pending) {
        return;
      }
      this.#pending = true;
      queueMicrotask(() => {
        this.#pending = false;
        this.#load();
      });
    }

    #load() {
      if (!this.isConnected) {
        return;
      }
      const origin = portalOrigin(this.getAttribute("portal"));
      const token = this.getAttribute("auth-token");
      let src = origin && frameUrl(origin, this.getAttribute("page"), token);
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

    /** Only our own frame, at the portal's origin, may ask for a token. */
    #message(event) {
      const data = event.data;
      if (
        !this.#frame ||
        event.source !== this.#frame.contentWindow ||
        event.origin !== this.#origin ||
        !data ||
        data.type !== AUTH_REQUIRED
      ) {
        return;
      }
      const status = data.status === 403 ? 403 : 401;
      this.dispatchEvent(
        new CustomEvent(AUTH_REQUIRED, { bubbles: true, composed: true, detail: { status } })
      );
    }
  }

  window.customElements.define(ELEMENT, ReleasedPage);
})();
