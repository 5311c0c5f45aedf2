{
  description = "mitzod: a hardened self-hosted server for supervising coding-agent sessions";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # Landlock, socket activation and the privilege drop are Linux-only.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      commit = self.shortRev or self.dirtyShortRev or "unknown";
    in
    {
      packages = forAllSystems (pkgs: {
        mitzod = pkgs.callPackage ./nix/package.nix { inherit commit; };
        mitzo-client-py = pkgs.python3Packages.callPackage ./nix/client-py.nix { };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.mitzod;
      });

      # services.mitzo, with this flake's build of mitzod as the default
      # package.
      nixosModules.default =
        { pkgs, lib, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.mitzo.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.mitzod;
        };

      checks = forAllSystems (
        pkgs:
        let
          packages = self.packages.${pkgs.stdenv.hostPlatform.system};
        in
        {
          build = packages.mitzod;
          client-py = packages.mitzo-client-py;
        }
        // import ./nix/checks.nix {
          inherit lib pkgs;
          inherit (packages) mitzod;
          module = self.nixosModules.default;
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.mitzod ];
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.rust-analyzer
            pkgs.maturin
            pkgs.python3
            pkgs.git
            # systemd-analyze and systemd-socket-activate for the tests
            pkgs.systemd
            pkgs.nixfmt
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
