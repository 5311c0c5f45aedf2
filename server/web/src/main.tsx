import { render } from "preact";
import "./style.css";
import { App } from "./ui/app";
import * as ws from "./ws";

render(<App />, document.getElementById("app") as HTMLElement);

// Phones sleep and networks drop: try at once when either comes back.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") ws.nudge();
});
window.addEventListener("online", () => ws.nudge());

// The service worker caches the app shell only. Its URL goes through a
// Trusted Types policy that accepts exactly that one script.
if ("serviceWorker" in navigator && window.isSecureContext) {
  const tt = (window as unknown as { trustedTypes?: { createPolicy: (n: string, p: object) => { createScriptURL: (s: string) => unknown } } }).trustedTypes;
  const url = tt
    ? tt.createPolicy("mitzo-sw", {
        createScriptURL: (s: string) => {
          if (s !== "/sw.js") throw new TypeError("unexpected script URL");
          return s;
        },
      }).createScriptURL("/sw.js")
    : "/sw.js";
  navigator.serviceWorker.register(url as string, { scope: "/" }).catch(() => {});
}
