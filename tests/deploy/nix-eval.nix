# Evaluates nix/module.nix with nixpkgs' own lib.evalModules, the way NixOS
# would, for the scenarios tests/deploy/nix-eval checks. What is not here is
# NixOS itself: the few options the module sets are declared below as loose
# types (enough to read back what the module defined), and `pkgs` is a small
# stand-in with the attributes the module reads.
#
#   nix-instantiate --eval --strict --json tests/deploy/nix-eval.nix \
#     --argstr libPath .../nixpkgs-lib/lib --argstr readmeModule FILE -A ok.readme
{
  # nixpkgs' lib directory.
  libPath,
  # The NixOS module of the README's example (extracted by nix-eval).
  readmeModule,
}:
let
  lib = import (/. + libPath);
  inherit (lib) mkOption types;

  storeDir = builtins.storeDir;
  standInPackage = name: mainProgram: {
    type = "derivation";
    inherit name;
    pname = name;
    outPath = "${storeDir}/00000000000000000000000000000000-${name}";
    meta = lib.optionalAttrs (mainProgram != null) { inherit mainProgram; };
  };

  # The value type of nixpkgs' pkgs.formats.toml (pkgs-lib/formats.nix):
  # TOML has no null, and neither has this type.
  tomlValue =
    let
      valueType =
        types.oneOf [
          types.bool
          types.int
          types.float
          types.str
          types.path
          (types.attrsOf valueType)
          (types.listOf valueType)
        ]
        // {
          description = "TOML value";
        };
    in
    valueType;

  pkgs = {
    stdenv.hostPlatform.system = "x86_64-linux";
    bash = standInPackage "bash" "bash";
    coreutils = standInPackage "coreutils" null;
    git = standInPackage "git" "git";
    claude-code = standInPackage "claude-code" "claude";
    # generate keeps the value, so the test reads back exactly what the
    # module asked to be written as TOML.
    formats.toml =
      { }:
      {
        type = tomlValue;
        # Another hash than the stand-in derivations': the checked copy of
        # this file has the same name.
        generate = name: value: {
          inherit name value;
          outPath = "${storeDir}/11111111111111111111111111111111-${name}";
        };
      };
    # The build script is kept, so that nix-eval can run it (with the
    # stand-in store paths replaced by real files).
    runCommand =
      name: env: script:
      standInPackage name null // (env.passthru or { }) // { inherit script; };
    # Only the flake's package set calls this (flake.nix's packages.mitzod).
    callPackage =
      path: _:
      if path == ../../nix/package.nix then
        standInPackage "mitzod-flake" "mitzod"
      else
        throw "stand-in pkgs: callPackage ${toString path}";
  };

  # flake.nix's outputs, with this stand-in pkgs as nixpkgs' package set
  # (flakes themselves need Nix 2.4+ with the flakes feature; this calls the
  # outputs function the way `nix` would, on a fixed point of itself).
  flake =
    let
      outputs = (import ../../flake.nix).outputs {
        self = outputs;
        nixpkgs = {
          inherit lib;
          legacyPackages.x86_64-linux = pkgs;
        };
      };
    in
    outputs;

  mitzod = standInPackage "mitzod" "mitzod";

  # The NixOS options the module sets, declared loosely; and the groups
  # NixOS itself declares (users-groups.nix) that a configuration may name.
  nixosStandIn = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      users.users = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      users.groups = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      systemd.services = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      systemd.sockets = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      systemd.packages = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
      systemd.tmpfiles.rules = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.anything;
        default = [ ];
      };
      networking.firewall.allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
      };
    };
    config = {
      users.users.root = { };
      users.groups = {
        root = { };
        wheel = { };
        users = { };
        nogroup = { };
      };
      _module.args.pkgs = pkgs;
    };
  };
  # Every scenario but the flake's names the package itself.
  packageStandIn = {
    services.mitzo.package = mitzod;
  };

  # Stands in for the README's ./configuration.nix: the account the
  # example names.
  aliceAccount = {
    users.users.alice = {
      isNormalUser = true;
      group = "users";
    };
  };

  evaluate = modules: evaluateWith ([ packageStandIn ] ++ modules);
  evaluateWith =
    modules:
    let
      inherit
        (lib.evalModules {
          modules = [
            nixosStandIn
            ../../nix/module.nix
          ]
          ++ modules;
        })
        config
        ;
      # NixOS refuses to build a system with a failed assertion; so does this.
      failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
      svc = config.systemd.services.mitzod;
      names = map (p: p.name);
    in
    if failed != [ ] then
      throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}"
    else
      let
        config' = lib.head svc.restartTriggers;
        # With checkConfig (the default) the service reads the checked copy.
        generated = config'.unchecked or config';
      in
      {
        settings = generated.value;
        configFile = {
          path = svc.environment.MITZOD_CONFIG;
          checked = config' ? unchecked;
          generated = generated.outPath;
          script = config'.script or null;
        };
        service = {
          inherit (svc) environment serviceConfig;
          path = names svc.path;
        };
        sockets = config.systemd.sockets;
        packages = names config.systemd.packages;
        systemPackages = names config.environment.systemPackages;
        tmpfiles = config.systemd.tmpfiles.rules;
        users = config.users.users;
        groups = lib.attrNames config.users.groups;
        firewall = config.networking.firewall.allowedTCPPorts;
        inherit (config) warnings;
      };

  enable = {
    services.mitzo.enable = true;
  };
in
{
  # Configurations that must evaluate; nix-eval checks what each produced.
  ok = {
    # flake.nix's nixosModules.default: the module with the flake's own
    # mitzod as the default package (no packageStandIn here).
    flake = evaluateWith [
      flake.nixosModules.default
      enable
      { services.mitzo.repos.demo = "/srv/demo"; }
    ];
  }
  // lib.mapAttrs (_: evaluate) {
    readme = [
      aliceAccount
      (import (/. + readmeModule))
    ];

    startAsUser = [
      enable
      {
        services.mitzo.startAsUser = true;
        services.mitzo.repos.demo = "/srv/demo";
      }
    ];

    oneCredential = [
      enable
      {
        services.mitzo.repos.demo = "/srv/demo";
        services.mitzo.credentials.ntfy-token = "/run/keys/mitzo/ntfy-token";
        services.mitzo.credentials.anthropic-api-key = null;
      }
    ];

    severalRepos = [
      aliceAccount
      enable
      {
        services.mitzo = {
          user = "alice";
          group = "users";
          repos.project = "/home/alice/src/project";
          settings.repos.infra = "/srv/infra";
          settings.repo_path = "/home/alice/src/project";
          settings.agent.extra_write_paths = [ "/srv/cache" ];
          settings.agent.extra_read_paths = [ "/home/alice/docs" ];
          settings.agent.network = "proxy";
          settings.agent.allowed_hosts = [
            "api.anthropic.com"
            "github.com:443"
          ];
        };
      }
    ];

    customStateDir = [
      enable
      {
        services.mitzo = {
          repos.demo = "/srv/demo";
          settings.state_dir = "/srv/mitzo-state";
          settings.agent.network = "ports";
        };
      }
    ];

    customStateDirAsUser = [
      enable
      {
        services.mitzo = {
          startAsUser = true;
          repos.demo = "/srv/demo";
          settings.state_dir = "/srv/mitzo-state";
        };
      }
    ];

    ntfy = [
      enable
      {
        services.mitzo = {
          repos.demo = "/srv/demo";
          settings.public_url = "https://box.tailnet.ts.net:3100";
          settings.ntfy = {
            url = "https://ntfy.example";
            topic = "mitzo";
          };
        };
      }
    ];

    ntfyOneTap = [
      enable
      {
        services.mitzo = {
          repos.demo = "/srv/demo";
          settings.public_url = "https://box.tailnet.ts.net:3100";
          settings.ntfy = {
            url = "https://ntfy.example";
            topic = "mitzo";
            one_tap = true;
            delay_secs = 0;
          };
        };
      }
    ];

    noConfigCheck = [
      enable
      {
        services.mitzo = {
          repos.demo = "/srv/demo";
          checkConfig = false;
        };
      }
    ];

    firewall = [
      enable
      {
        services.mitzo = {
          repos.demo = "/srv/demo";
          openFirewall = true;
          listen = [
            "127.0.0.1:3100"
            "[::1]:3101"
            "100.64.0.1:3102"
            "0.0.0.0:3103"
          ];
        };
      }
    ];
  };

  # Configurations that evaluate (the freeform settings take any TOML value)
  # but must fail to build: mitzod's own reading of the generated file, the
  # config file's derivation, refuses them. nix-eval runs each build script.
  buildRefused = lib.mapAttrs (_: r: r // { run = evaluate r.modules; }) {
    unknownKey = {
      modules = [
        enable
        {
          services.mitzo.repos.demo = "/srv/demo";
          services.mitzo.settings.idle_exti = "30m";
        }
      ];
      expect = [
        "idle_exti"
        "unknown field"
      ];
    };
    badDuration = {
      modules = [
        enable
        {
          services.mitzo.repos.demo = "/srv/demo";
          services.mitzo.settings.session.detach_ttl = "soon";
        }
      ];
      expect = [ "session.detach_ttl" ];
    };
  };

  # Configurations that must fail at evaluation, each with the strings its
  # message must contain: the option's name and what was expected.
  refused = lib.mapAttrs (_: r: r // { run = evaluate r.modules; }) {
    listenString = {
      modules = [
        enable
        { services.mitzo.settings.listen = "127.0.0.1:3100"; }
      ];
      expect = [
        "services.mitzo.settings.listen"
        "list of IP:PORT address"
      ];
    };
    listenPortRange = {
      modules = [
        enable
        { services.mitzo.listen = [ "127.0.0.1:99999" ]; }
      ];
      expect = [
        "services.mitzo.listen"
        "port 1-65535"
      ];
    };
    listenPortZero = {
      modules = [
        enable
        { services.mitzo.settings.listen = [ "127.0.0.1:0" ]; }
      ];
      expect = [
        "services.mitzo.settings.listen"
        "port 1-65535"
      ];
    };
    listenOctet = {
      modules = [
        enable
        { services.mitzo.listen = [ "999.0.0.1:3100" ]; }
      ];
      expect = [
        "services.mitzo.listen"
        "IPv4 octets 0-255"
      ];
    };
    ntfyOneTapNotBool = {
      modules = [
        enable
        {
          services.mitzo.settings.public_url = "https://box:3100";
          services.mitzo.settings.ntfy = {
            url = "https://ntfy.example";
            topic = "mitzo";
            one_tap = "yes";
          };
        }
      ];
      expect = [
        "services.mitzo.settings.ntfy.one_tap"
        "boolean"
      ];
    };
    listenHostname = {
      modules = [
        enable
        { services.mitzo.listen = [ "localhost:3100" ]; }
      ];
      expect = [
        "services.mitzo.listen"
        "IP:PORT address"
      ];
    };
    extraWriteString = {
      modules = [
        enable
        { services.mitzo.settings.agent.extra_write_paths = "/x"; }
      ];
      expect = [
        "services.mitzo.settings.agent.extra_write_paths"
        "list of absolute path"
      ];
    };
    extraReadRelative = {
      modules = [
        enable
        { services.mitzo.settings.agent.extra_read_paths = [ "docs" ]; }
      ];
      expect = [
        "services.mitzo.settings.agent.extra_read_paths"
        "absolute path"
      ];
    };
    networkUnknown = {
      modules = [
        enable
        { services.mitzo.settings.agent.network = "open"; }
      ];
      expect = [
        "services.mitzo.settings.agent.network"
        "one of"
      ];
    };
    extraWriteRoot = {
      modules = [
        enable
        { services.mitzo.settings.agent.extra_write_paths = [ "/" ]; }
      ];
      expect = [
        "services.mitzo.settings.agent.extra_write_paths"
        "would defeat"
      ];
    };
    ntfyWithoutPublicUrl = {
      modules = [
        enable
        {
          services.mitzo.settings.ntfy = {
            url = "https://ntfy.example";
            topic = "mitzo";
          };
        }
      ];
      expect = [
        "services.mitzo.settings.public_url"
        "required when services.mitzo.settings.ntfy is set"
      ];
    };
    ntfyUnknownKey = {
      modules = [
        enable
        {
          services.mitzo.settings.public_url = "https://box:3100";
          services.mitzo.settings.ntfy = {
            url = "https://ntfy.example";
            tpoic = "mitzo";
          };
        }
      ];
      expect = [ "services.mitzo.settings.ntfy.tpoic" ];
    };
    ntfyBadTopic = {
      modules = [
        enable
        {
          services.mitzo.settings.public_url = "https://box:3100";
          services.mitzo.settings.ntfy = {
            url = "https://ntfy.example";
            topic = "my topic";
          };
        }
      ];
      expect = [
        "services.mitzo.settings.ntfy.topic"
        "ntfy topic"
      ];
    };
    publicUrlNoScheme = {
      modules = [
        enable
        { services.mitzo.settings.public_url = "box.tailnet.ts.net:3100"; }
      ];
      expect = [
        "services.mitzo.settings.public_url"
        "http:// or https:// URL"
      ];
    };
    unknownUser = {
      modules = [
        enable
        { services.mitzo.user = "bob"; }
      ];
      expect = [
        "services.mitzo.user"
        "`bob` is not declared in users.users"
      ];
    };
    unknownGroup = {
      modules = [
        enable
        { services.mitzo.group = "devs"; }
      ];
      expect = [
        "services.mitzo.group"
        "`devs` is not declared in users.groups"
      ];
    };
    rootUser = {
      modules = [
        enable
        { services.mitzo.user = "root"; }
      ];
      expect = [
        "services.mitzo.user"
        "refuses to serve as root"
      ];
    };
    credentialInStore = {
      modules = [
        enable
        { services.mitzo.credentials.jwt-secret = "${builtins.storeDir}/00000000000000000000000000000000-jwt-secret"; }
      ];
      expect = [
        "services.mitzo.credentials.jwt-secret"
        "absolute path outside the Nix store"
      ];
    };
    credentialRelative = {
      modules = [
        enable
        { services.mitzo.credentials.passphrase-hash = "keys/passphrase-hash"; }
      ];
      expect = [
        "services.mitzo.credentials.passphrase-hash"
        "credential-store name"
      ];
    };
    repoRelative = {
      modules = [
        enable
        { services.mitzo.repos.demo = "src/demo"; }
      ];
      expect = [
        "services.mitzo.repos.demo"
        "absolute path"
      ];
    };
    repoBadName = {
      modules = [
        enable
        { services.mitzo.settings.repos."my repo" = "/srv/demo"; }
      ];
      expect = [
        "services.mitzo.settings.repos"
        "[A-Za-z0-9._-]+"
      ];
    };
    apiKeyFileInStore = {
      modules = [
        enable
        {
          services.mitzo.settings.agent.api_key_file = "${builtins.storeDir}/00000000000000000000000000000000-api-key";
        }
      ];
      expect = [
        "services.mitzo.settings.agent.api_key_file"
        "not in the Nix store"
      ];
    };
    stateDirRelative = {
      modules = [
        enable
        { services.mitzo.settings.state_dir = "var/mitzo"; }
      ];
      expect = [
        "services.mitzo.settings.state_dir"
        "absolute path"
      ];
    };
    repoPathInStore = {
      modules = [
        enable
        { services.mitzo.settings.repo_path = "${builtins.storeDir}/00000000000000000000000000000000-src"; }
      ];
      expect = [
        "services.mitzo.settings.repo_path"
        "not in the Nix store"
      ];
    };
  };
}
