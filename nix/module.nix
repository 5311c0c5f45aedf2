# NixOS module for mitzod.
#
# The hardening lives in the package's own units (../systemd, installed
# through `systemd.packages`); this module adds only what differs per host:
# the config file, the listen addresses, the credentials, the repositories,
# the service user and the state directory. The plain units and NixOS
# therefore never drift apart.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.mitzo;
  settingsFormat = pkgs.formats.toml { };
  configFile = settingsFormat.generate "mitzod.toml" cfg.settings;

  stateDir = cfg.settings.state_dir;
  isStorePath = p: lib.hasPrefix "${builtins.storeDir}/" (toString p);
  isAbsolute = p: lib.hasPrefix "/" (toString p);

  # Everything agents may write: bound read-write into the service's mount
  # namespace. The unit has ProtectSystem=strict and ProtectHome=tmpfs, so a
  # path that is not listed here is read-only or not there at all.
  writablePaths = lib.unique (
    lib.attrValues cfg.repos
    ++ lib.optional (cfg.settings ? repo_path) cfg.settings.repo_path
    ++ (cfg.settings.agent.extra_write_paths or [ ])
  );
  # Extra read-only paths for agents; under /home they must be bound too.
  readOnlyPaths = lib.unique (cfg.settings.agent.extra_read_paths or [ ]);

  tcpPort = address: lib.toInt (lib.last (lib.splitString ":" address));

  # mitzod-user.conf from the package, as a drop-in of mitzod.service.
  userDropIn = pkgs.runCommand "mitzod-user-drop-in" { } ''
    install -Dm0644 ${cfg.package}/share/mitzod/mitzod-user.conf \
      $out/lib/systemd/system/mitzod.service.d/10-user.conf
  '';
in
{
  options.services.mitzo = {
    enable = lib.mkEnableOption "mitzod, the self-hosted coding-agent session server";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The mitzod package. Its systemd units are used as they are.";
    };

    user = lib.mkOption {
      type = lib.types.str;
      default = "mitzo";
      example = "alice";
      description = ''
        The account mitzod switches to after reading its credentials, and that
        agents run as. It must own the repositories in
        {option}`services.mitzo.repos`. Created when left at `mitzo`.
      '';
    };

    group = lib.mkOption {
      type = lib.types.str;
      default = "mitzo";
      example = "users";
      description = "Primary group for {option}`services.mitzo.user`.";
    };

    startAsUser = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Start mitzod as {option}`services.mitzo.user` directly, with no root
        and no capabilities (the package's `mitzod-user.conf` drop-in),
        instead of starting as root and dropping privileges. The credentials
        are then readable by that user, i.e. by the uid agents run as; see
        SECURITY.md.
      '';
    };

    listen = lib.mkOption {
      type = lib.types.listOf (lib.types.strMatching "([[][0-9A-Fa-f:.]+[]]|[0-9.]+):[0-9]+");
      default = [ "127.0.0.1:3100" ];
      example = [
        "127.0.0.1:3100"
        "100.64.0.1:3100"
      ];
      description = ''
        `IP:PORT` addresses systemd listens on for mitzod (the socket's
        `ListenStream=`; mitzod starts on the first connection). Also mitzod's
        own `listen` setting, its fallback when started without sockets.
        An address that is not up at boot (a Tailscale address) is fine: the
        socket uses `FreeBind=`.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the TCP ports of {option}`services.mitzo.listen` in the firewall.";
    };

    unixSocket.enable = lib.mkEnableOption ''
      the local API socket /run/mitzod/api.sock (mode 0660, group `mitzo`) for
      hooks and scripts on this host
    '';

    repos = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = {
        project = "/home/alice/src/project";
        infra = "/home/alice/src/infra";
      };
      description = ''
        Repositories by name (mitzod's `repos`). Each is bound read-write
        into the service (`BindPaths=`); nothing else outside the state
        directory is writable.
      '';
    };

    credentials = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = {
        jwt-secret = "/run/keys/mitzo/jwt-secret";
        passphrase-hash = "/run/keys/mitzo/passphrase-hash";
        ntfy-token = "/run/keys/mitzo/ntfy-token";
      };
      description = ''
        Secret files by credential name, passed with `LoadCredential=`;
        mitzod reads `jwt-secret`, `passphrase-hash` and `ntfy-token` from
        `$CREDENTIALS_DIRECTORY`. Paths outside the Nix store (which every
        user can read), e.g. from agenix or sops-nix. When empty, the unit's
        defaults apply: `/etc/credstore/mitzod.jwt-secret`,
        `/etc/credstore/mitzod.passphrase-hash`,
        `/etc/credstore/mitzod.ntfy-token`.
      '';
    };

    agent.package = lib.mkOption {
      type = lib.types.nullOr lib.types.package;
      default = null;
      example = lib.literalExpression "pkgs.claude-code";
      description = ''
        The agent CLI. Added to the service's PATH and used as mitzod's
        `agent.command` (its main program) unless that is set.
      '';
    };

    settings = lib.mkOption {
      type = lib.types.submodule { freeformType = settingsFormat.type; };
      default = { };
      example = {
        public_url = "https://box.tailnet.ts.net:3100";
        idle_exit = "30m";
        agent.env_passthrough = [ "ANTHROPIC_API_KEY" ];
        ntfy = {
          url = "https://ntfy.example";
          topic = "mitzo";
        };
      };
      description = ''
        mitzod's configuration (`mitzod.toml`, see the example in the
        package's share/mitzod/examples). `user`, `group`, `listen`, `repos`
        and `agent.command` are filled in from the options above. Never put a
        secret here: the file lands in the Nix store.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !(lib.any isStorePath (lib.attrValues cfg.credentials));
        message = ''
          services.mitzo.credentials: ${
            lib.concatStringsSep ", " (lib.attrNames (lib.filterAttrs (_: isStorePath) cfg.credentials))
          } point into the Nix store, which every local user can read. Keep secrets outside it (/run/keys, /etc/credstore, agenix, sops-nix).
        '';
      }
      {
        assertion = lib.all isAbsolute (lib.attrValues cfg.credentials);
        message = "services.mitzo.credentials: every value must be an absolute path.";
      }
      {
        assertion = lib.all isAbsolute (writablePaths ++ readOnlyPaths);
        message = "services.mitzo: repos, settings.repo_path and settings.agent.extra_*_paths must be absolute paths.";
      }
      {
        assertion = cfg.user != "root";
        message = "services.mitzo.user: mitzod refuses to serve as root; name an ordinary account.";
      }
    ];

    services.mitzo.settings = {
      user = cfg.user;
      group = cfg.group;
      state_dir = lib.mkDefault "/var/lib/mitzo";
      listen = lib.mkDefault cfg.listen;
      repos = cfg.repos;
      agent.command = lib.mkIf (cfg.agent.package != null) (lib.mkDefault (lib.getExe cfg.agent.package));
    };

    users.users = lib.mkIf (cfg.user == "mitzo") {
      mitzo = {
        isSystemUser = true;
        group = cfg.group;
        home = stateDir;
        description = "mitzod service user";
      };
    };
    # `mitzo` is also the group of the local API socket.
    users.groups.mitzo = { };

    # The unit starts as root without StateDirectory= (systemd would chown
    # that back to root on every start): the directory is created here,
    # owned by the service user.
    systemd.tmpfiles.rules = [ "d ${stateDir} 0700 ${cfg.user} ${cfg.group} - -" ];

    # `mitzod hash-passphrase`, `mitzod token path`, `mitzod check-config`.
    environment.systemPackages = [ cfg.package ];

    systemd.packages = [ cfg.package ] ++ lib.optional cfg.startAsUser userDropIn;

    # NixOS does not read the [Install] sections of packaged units.
    systemd.sockets.mitzod = {
      wantedBy = [ "sockets.target" ];
      # The empty entry drops the unit's default before adding ours.
      socketConfig.ListenStream = [ "" ] ++ cfg.listen;
    };
    systemd.sockets.mitzod-unix = lib.mkIf cfg.unixSocket.enable {
      wantedBy = [ "sockets.target" ];
    };

    systemd.services.mitzod = {
      # Started by its socket; restarted when its configuration changes.
      restartTriggers = [ configFile ];
      path = [ pkgs.git ] ++ lib.optional (cfg.agent.package != null) cfg.agent.package;
      environment.MITZOD_CONFIG = "${configFile}";
      serviceConfig = {
        # ProtectHome=tmpfs hides /home; ReadWritePaths= cannot reach beneath
        # it, BindPaths= can.
        BindPaths = writablePaths;
        BindReadOnlyPaths = readOnlyPaths;
        ReadWritePaths = [ stateDir ];
      }
      // lib.optionalAttrs (cfg.credentials != { }) {
        # The empty entry drops the unit's /etc/credstore defaults.
        LoadCredential = [ "" ] ++ lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentials;
      }
      // lib.optionalAttrs cfg.startAsUser {
        User = cfg.user;
        Group = cfg.group;
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall (lib.unique (map tcpPort cfg.listen));
  };
}
