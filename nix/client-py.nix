# The Python package `mitzo_client` (client-py/: pyo3 + maturin).
{
  lib,
  buildPythonPackage,
  rustPlatform,
}:
let
  cargoToml = lib.importTOML ../Cargo.toml;
  fs = lib.fileset;
in
buildPythonPackage {
  pname = "mitzo-client";
  inherit (cargoToml.workspace.package) version;
  pyproject = true;

  # The whole Cargo workspace (maturin runs cargo inside it), without the
  # deployment files.
  src = fs.toSource {
    root = ../.;
    fileset = fs.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../server
      ../client-py
    ];
  };

  cargoDeps = rustPlatform.importCargoLock { lockFile = ../Cargo.lock; };
  # maturin builds the pyproject.toml found here.
  buildAndTestSubdir = "client-py";

  nativeBuildInputs = [
    rustPlatform.cargoSetupHook
    rustPlatform.maturinBuildHook
  ];

  pythonImportsCheck = [ "mitzo_client" ];

  meta = {
    description = "Python client for mitzod";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
