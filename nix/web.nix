# The owner's web app (server/web), built offline in the Nix sandbox from
# its package-lock.json (importNpmLock fetches each locked tarball by its
# integrity hash), so the mitzod package embeds it without running npm.
{
  lib,
  buildNpmPackage,
  importNpmLock,
}:
buildNpmPackage {
  pname = "mitzod-web";
  version = "0.0.0";
  src = lib.fileset.toSource {
    root = ../server/web;
    fileset = lib.fileset.difference ../server/web (lib.fileset.maybeMissing ../server/web/node_modules);
  };
  npmDeps = importNpmLock { npmRoot = ../server/web; };
  npmConfigHook = importNpmLock.npmConfigHook;
  # build.mjs writes hashed assets, index.html, the manifest, icons, the
  # service worker and their .br/.gz files into $MITZO_WEB_OUT.
  env.MITZO_WEB_OUT = "dist";
  installPhase = ''
    runHook preInstall
    cp -r dist $out
    runHook postInstall
  '';
}
