declare module "*.css";
// Trusted Types (not yet in TypeScript's DOM library).
interface TrustedHTML {
  readonly __trustedHTML: unique symbol;
}
