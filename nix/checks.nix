# Everything `nix flake check` runs besides building the packages.
{
  lib,
  pkgs,
  mitzod,
  module,
}:
{
  # cargo clippy over the daemon and its library crates, warnings are errors (as in .ci/run).
  clippy = mitzod.overrideAttrs (old: {
    pname = "mitzod-clippy";
    nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
    buildPhase = ''
      runHook preBuild
      cargo clippy --offline -p mitzod -p mitzo-sandbox -p mitzo-protocol --all-targets -- -D warnings
      runHook postBuild
    '';
    installPhase = ''
      touch $out
    '';
    doCheck = false;
  });

  # cargo test for the daemon. Tests that need root, Landlock or a real
  # systemd skip themselves here unless their MITZO_REQUIRE_* variable is set
  # (it is not: the Nix build sandbox has neither root nor a service manager);
  # .ci/run and the VM test cover those.
  tests = mitzod.overrideAttrs (old: {
    pname = "mitzod-tests";
    doCheck = true;
    nativeCheckInputs = (old.nativeCheckInputs or [ ]) ++ [
      pkgs.git
      # systemd-socket-activate, for the socket activation test
      pkgs.systemd
    ];
    installPhase = ''
      touch $out
    '';
  });

  # The NixOS module in a VM: socket activation, login, the hardening score,
  # the sandbox, the internal token across restarts.
  vm-basic = import ./tests/basic.nix { inherit lib pkgs module; };
}
