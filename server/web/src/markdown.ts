// Agent text is hostile: Markdown by `marked` with raw HTML escaped, then
// DOMPurify on the output with a narrow allow-list, links forced to
// http(s)/mailto with rel="noopener noreferrer", and the result handed to
// the DOM only as TrustedHTML (the page requires Trusted Types).
import DOMPurify from "dompurify";
import { Marked, type Tokens } from "marked";

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string);

const marked = new Marked({
  gfm: true,
  breaks: false,
  async: false,
  renderer: {
    // Raw HTML in the agent's Markdown is shown as text, never parsed.
    html(token: Tokens.HTML | Tokens.Tag) {
      return escapeHtml(token.text);
    },
    // Images would fetch: show them as links instead.
    image(token: Tokens.Image) {
      return `<a href="${escapeHtml(token.href)}">${escapeHtml(token.text || token.href)}</a>`;
    },
  },
});

const SAFE_URL = /^(?:https?:|mailto:)/i;

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    const href = node.getAttribute("href") || "";
    if (!SAFE_URL.test(href.trim())) node.removeAttribute("href");
    else {
      node.setAttribute("rel", "noopener noreferrer");
      node.setAttribute("target", "_blank");
    }
  }
});

const CONFIG = {
  ALLOWED_TAGS: [
    "a", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "li",
    "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
  ],
  ALLOWED_ATTR: ["href", "title", "align", "start", "target", "rel"],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  ALLOWED_URI_REGEXP: SAFE_URL,
  RETURN_TRUSTED_TYPE: true as const,
};

const cache = new Map<string, TrustedHTML | string>();

/** Sanitised HTML for the agent's Markdown, as TrustedHTML. */
export function renderMarkdown(src: string): TrustedHTML | string {
  const hit = cache.get(src);
  if (hit) return hit;
  const html = marked.parse(src) as string;
  const out = DOMPurify.sanitize(html, CONFIG) as unknown as TrustedHTML;
  if (src.length < 20000) {
    if (cache.size > 3000) cache.clear();
    cache.set(src, out);
  }
  return out;
}
