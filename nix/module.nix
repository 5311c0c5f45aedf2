# NixOS module for mitzod.
#
# The hardening lives in the package's own units (../systemd, installed
# through `systemd.packages`); this module adds only what differs per host:
# the config file, the listen addresses, the credentials, the repositories,
# the service user and the state directory. The plain units and NixOS
# therefore never drift apart.
#
# Every setting the module reads, or that must be right for the service to
# start, is a typed option (inside the freeform `settings` where it is a
# mitzod key), so a wrong value fails at evaluation with the option's name.
# tests/deploy/nix-eval evaluates this file with nixpkgs' lib.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.mitzo;
  settingsFormat = pkgs.formats.toml { };
  # TOML has no null: unset optional keys are left out of the file.
  dropNulls =
    v: if lib.isAttrs v then lib.mapAttrs (_: dropNulls) (lib.filterAttrs (_: x: x != null) v) else v;
  configFile = settingsFormat.generate "mitzod.toml" (dropNulls cfg.settings);
  # The file the service reads: the generated one, once mitzod has read it
  # the way `serve` does, so that a wrong key or value in the freeform
  # settings fails `nixos-rebuild` (the build of this derivation) rather than
  # the service's start. --parse-only: nothing of the build machine (its
  # accounts, paths, credentials) is looked at.
  checkedConfigFile =
    if cfg.checkConfig then
      pkgs.runCommand "mitzod.toml"
        {
          passthru.unchecked = configFile;
        }
        ''
          ${lib.getExe cfg.package} check-config --parse-only --config ${configFile}
          install -m 0444 ${configFile} "$out"
        ''
    else
      configFile;

  inherit (lib) mkOption types;

  # A type with the description an error message should show.
  described = description: type: type // { inherit description; };

  # Outside the Nix store, which every local user can read; strings, so
  # that nothing is copied into the store by accident.
  absolutePath = types.pathWith {
    absolute = true;
    inStore = false;
  };

  # mitzod.socket's ListenStream=: IP:PORT (IPv6 in brackets); the IPv4
  # octets at most 255 and the port 1 to 65535, checked below.
  listenPattern = "([[][0-9A-Fa-f:.]+[]]|[0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}):([0-9]{1,5})";
  # Leading zeros dropped first: lib.toInt refuses them.
  decimal = s: lib.toInt (lib.head (builtins.match "0*([0-9]+)" s));
  listenInRange =
    address:
    let
      m = builtins.match listenPattern address;
      host = lib.elemAt m 0;
      port = decimal (lib.elemAt m 1);
      octets = lib.splitString "." host;
    in
    m != null
    && port >= 1
    && port <= 65535
    && (lib.hasPrefix "[" host || lib.all (o: decimal o <= 255) octets);
  listenAddress =
    described "IP:PORT address such as 127.0.0.1:3100 or [::1]:3100 (IPv4 octets 0-255, port 1-65535)"
      (types.addCheck (types.strMatching listenPattern) listenInRange);
  isLoopback = address: lib.hasPrefix "127." address || lib.hasPrefix "[::1]:" address;
  tcpPort = address: lib.toInt (lib.last (lib.splitString ":" address));

  httpUrl = described "http:// or https:// URL with a host" (
    types.strMatching "https?://[^/@:]+(:[0-9]+)?(/.*)?"
  );

  # LoadCredential= sources: an absolute path (must exist when the service
  # starts) or a credential-store name (looked up in /etc/credstore,
  # /run/credstore, /usr/lib/credstore; skipped when missing).
  isStorePath = p: lib.hasPrefix "${builtins.storeDir}/" p;
  credentialSource =
    described
      "absolute path outside the Nix store, or a credential-store name without a slash (mitzod.jwt-secret)"
      (
        types.addCheck types.str (
          s:
          (lib.hasPrefix "/" s && !isStorePath s) || builtins.match "[A-Za-z0-9][A-Za-z0-9._@-]*" s != null
        )
      );
  defaultCredentials = {
    jwt-secret = "mitzod.jwt-secret";
    passphrase-hash = "mitzod.passphrase-hash";
    ntfy-token = "mitzod.ntfy-token";
    anthropic-api-key = "mitzod.anthropic-api-key";
  };
  loadedCredentials = lib.filterAttrs (_: v: v != null) cfg.credentials;

  # A freeform table of mitzod's own config, for keys this module does not
  # type (mitzod's check-config and start-up check those).
  tomlValue = settingsFormat.type;

  stateDir = cfg.settings.state_dir;
  defaultStateDir = "/var/lib/mitzo";
  # ProtectHome=tmpfs: ReadWritePaths= cannot reach beneath these, BindPaths= can.
  underHiddenHome = p: lib.any (h: p == h || lib.hasPrefix "${h}/" p) [
    "/home"
    "/root"
    "/run/user"
  ];

  # Everything agents may write: bound read-write into the service's mount
  # namespace. The unit has ProtectSystem=strict and ProtectHome=tmpfs, so a
  # path that is not listed here is read-only or not there at all.
  writablePaths = lib.unique (
    lib.attrValues cfg.settings.repos
    ++ lib.optional (cfg.settings.repo_path != null) cfg.settings.repo_path
    ++ cfg.settings.agent.extra_write_paths
    ++ lib.optional (underHiddenHome stateDir) stateDir
  );
  # Extra read-only paths for agents; under /home they must be bound too.
  readOnlyPaths = lib.unique cfg.settings.agent.extra_read_paths;

  repoNameOk = name: builtins.match "[A-Za-z0-9._-]+" name != null;
  credentialNameOk = name: builtins.match "[A-Za-z0-9._@-]+" name != null;

  # mitzod-user.conf from the package, as a drop-in of mitzod.service.
  userDropIn = pkgs.runCommand "mitzod-user-drop-in" { } ''
    install -Dm0644 ${cfg.package}/share/mitzod/mitzod-user.conf \
      $out/lib/systemd/system/mitzod.service.d/10-user.conf
  '';
in
{
  options.services.mitzo = {
    enable = lib.mkEnableOption "mitzod, the self-hosted coding-agent session server";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The mitzod package. Its systemd units are used as they are.";
    };

    user = mkOption {
      type = types.str;
      default = "mitzo";
      example = "alice";
      description = ''
        The account mitzod switches to after reading its credentials, and that
        agents run as. It must own the repositories in
        {option}`services.mitzo.repos`. Created when left at `mitzo`;
        any other account must be declared in {option}`users.users`.
      '';
    };

    group = mkOption {
      type = types.str;
      default = "mitzo";
      example = "users";
      description = ''
        Primary group for {option}`services.mitzo.user`. `mitzo` is created
        by the module; any other group must be declared in
        {option}`users.groups`.
      '';
    };

    startAsUser = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Start mitzod as {option}`services.mitzo.user` directly, with no root
        and no capabilities (the package's `mitzod-user.conf` drop-in),
        instead of starting as root and dropping privileges. The credentials
        are then readable by that user, i.e. by the uid agents run as; see
        SECURITY.md.
      '';
    };

    listen = mkOption {
      type = types.nonEmptyListOf listenAddress;
      default = [ "127.0.0.1:3100" ];
      example = [
        "127.0.0.1:3100"
        "100.64.0.1:3100"
      ];
      description = ''
        `IP:PORT` addresses systemd listens on for mitzod (the socket's
        `ListenStream=`; mitzod starts on the first connection). The default
        of {option}`services.mitzo.settings.listen`.
        An address that is not up at boot (a Tailscale address) is fine: the
        socket uses `FreeBind=`.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the TCP ports of {option}`services.mitzo.settings.listen` in the
        firewall, except those of loopback addresses.
      '';
    };

    unixSocket.enable = lib.mkEnableOption ''
      the local API socket /run/mitzod/api.sock (mode 0660, group `mitzo`) for
      hooks and scripts on this host
    '';

    repos = mkOption {
      type = types.attrsOf absolutePath;
      default = { };
      example = {
        project = "/home/alice/src/project";
        infra = "/home/alice/src/infra";
      };
      description = ''
        Repositories by name: merged into
        {option}`services.mitzo.settings.repos`. Each is bound read-write
        into the service (`BindPaths=`); nothing else outside the state
        directory is writable. With exactly one repository it is also
        mitzod's `repo_path`, the sessions' default.
      '';
    };

    credentials = mkOption {
      type = types.attrsOf (types.nullOr credentialSource);
      default = { };
      example = {
        jwt-secret = "/run/agenix/mitzo-jwt";
        ntfy-token = null;
      };
      description = ''
        Secret files by credential name, passed with `LoadCredential=`;
        mitzod reads `jwt-secret`, `passphrase-hash`, `ntfy-token` and
        `anthropic-api-key` from `$CREDENTIALS_DIRECTORY`. Each value is an
        absolute path outside the Nix store (agenix, sops-nix, /run/keys;
        it must exist when the service starts) or a credential-store name,
        looked up in /etc/credstore and skipped when missing. The defaults,
        `mitzod.<name>` for each of the four, apply per name: setting one
        keeps the others. `null` loads nothing under that name.
      '';
    };

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Read the generated mitzod.toml with `mitzod check-config --parse-only`
        when the system is built, so that a wrong key or value in
        {option}`services.mitzo.settings` fails the build instead of the
        service's start. Turn off only where the package cannot run on the
        build machine (cross compilation).
      '';
    };

    agent.package = mkOption {
      type = types.nullOr types.package;
      default = null;
      example = lib.literalExpression "pkgs.claude-code";
      description = ''
        The agent CLI. Added to the service's PATH and used as mitzod's
        `agent.command` (its main program) unless that is set.
      '';
    };

    agent.extraPackages = mkOption {
      type = types.listOf types.package;
      default = [
        pkgs.bash
        pkgs.coreutils
        pkgs.git
      ];
      defaultText = lib.literalExpression "[ pkgs.bash pkgs.coreutils pkgs.git ]";
      example = lib.literalExpression "[ pkgs.bash pkgs.coreutils pkgs.git pkgs.nodejs pkgs.ripgrep ]";
      description = ''
        Packages on the service's PATH, which agents and their tools inherit
        (mitzod itself needs git). Agents still reach only what their
        sandbox allows.
      '';
    };

    settings = mkOption {
      type = types.submodule {
        freeformType = tomlValue;
        options = {
          user = mkOption {
            type = types.str;
            description = "Set from {option}`services.mitzo.user`.";
          };
          group = mkOption {
            type = types.str;
            description = "Set from {option}`services.mitzo.group`.";
          };
          state_dir = mkOption {
            type = absolutePath;
            default = defaultStateDir;
            description = ''
              internal-token, mitzod.db and the agents' home. Created owned by
              the service user; the unit's `ReadWritePaths=` and
              `STATE_DIRECTORY` follow it.
            '';
          };
          listen = mkOption {
            type = types.nonEmptyListOf listenAddress;
            default = cfg.listen;
            defaultText = lib.literalExpression "config.services.mitzo.listen";
            description = ''
              The socket's `ListenStream=` addresses (mitzod serves on what the
              socket passes it). For a local Unix socket use
              {option}`services.mitzo.unixSocket.enable`.
            '';
          };
          public_url = mkOption {
            type = types.nullOr httpUrl;
            default = null;
            example = "https://box.tailnet.ts.net:3100";
            description = ''
              The address the owner's browser uses; required with
              {option}`services.mitzo.settings.ntfy`.
            '';
          };
          repos = mkOption {
            type = types.attrsOf absolutePath;
            default = { };
            description = ''
              Repositories by name, merged with {option}`services.mitzo.repos`;
              each is bound read-write into the service.
            '';
          };
          repo_path = mkOption {
            type = types.nullOr absolutePath;
            default = null;
            defaultText = lib.literalMD "the repository, when exactly one is configured";
            description = "The sessions' default repository; bound read-write into the service.";
          };
          agent = mkOption {
            default = { };
            description = "mitzod's `[agent]` table.";
            type = types.submodule {
              freeformType = tomlValue;
              options = {
                extra_read_paths = mkOption {
                  type = types.listOf absolutePath;
                  default = [ ];
                  description = "More paths agents may read; bound read-only into the service.";
                };
                extra_write_paths = mkOption {
                  type = types.listOf absolutePath;
                  default = [ ];
                  description = "More paths agents may write; bound read-write into the service.";
                };
                api_key_file = mkOption {
                  type = types.nullOr absolutePath;
                  default = null;
                  description = ''
                    A file holding the model API key, when not the credential
                    `anthropic-api-key` ({option}`services.mitzo.credentials`).
                  '';
                };
                network = mkOption {
                  type = types.nullOr (
                    types.enum [
                      "proxy"
                      "none"
                      "ports"
                    ]
                  );
                  default = null;
                  defaultText = lib.literalMD "mitzod's default, `\"proxy\"`";
                  description = ''
                    How agents reach the network: `"proxy"` (each agent in user
                    and network namespaces of its own, reaching only
                    `allowed_hosts` through mitzod's proxy; the unit allows
                    exactly `RestrictNamespaces=user net` for this), `"none"`
                    (no network at all) or `"ports"` (the host's network,
                    Landlock's TCP port rules: `allowed_connect_ports`).
                  '';
                };
              };
            };
          };
          ntfy = mkOption {
            default = null;
            description = "Push notifications for pending permissions (mitzod's `[ntfy]`).";
            type = types.nullOr (
              types.submodule {
                options = {
                  url = mkOption {
                    type = httpUrl;
                    example = "https://ntfy.sh";
                    description = "The ntfy server.";
                  };
                  topic = mkOption {
                    type = described "ntfy topic of 1 to 64 letters, digits, - or _" (
                      types.strMatching "[A-Za-z0-9_-]{1,64}"
                    );
                    description = "The topic notifications are published to.";
                  };
                  token_file = mkOption {
                    type = types.nullOr absolutePath;
                    default = null;
                    description = ''
                      The access token's file, when not the credential
                      `ntfy-token` ({option}`services.mitzo.credentials`).
                    '';
                  };
                  delay_secs = mkOption {
                    type = types.ints.unsigned;
                    default = 10;
                    description = "How long a permission waits before it is pushed.";
                  };
                  one_tap = mkOption {
                    type = types.bool;
                    default = false;
                    description = ''
                      Allow and deny actions in the notification itself. They
                      are offered only with an access token (the credential
                      `ntfy-token` or {option}`token_file`): whoever can read
                      the topic could otherwise approve. Off: the notification
                      links to the approval in the web app.
                    '';
                  };
                };
              }
            );
          };
        };
      };
      default = { };
      example = {
        public_url = "https://box.tailnet.ts.net:3100";
        idle_exit = "30m";
        ntfy = {
          url = "https://ntfy.example";
          topic = "mitzo";
        };
      };
      description = ''
        mitzod's configuration (`mitzod.toml`, see the example in the
        package's share/mitzod/examples). `user`, `group` and `agent.command`
        are filled in from the options above. Never put a secret here: the
        file lands in the Nix store.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.user != "root";
        message = "services.mitzo.user: mitzod refuses to serve as root; name an ordinary account.";
      }
      {
        assertion = config.users.users ? ${cfg.user};
        message = "services.mitzo.user: the account `${cfg.user}` is not declared in users.users; declare it (users.users.${cfg.user}) or leave services.mitzo.user at `mitzo`, which this module creates.";
      }
      {
        assertion = config.users.groups ? ${cfg.group};
        message = "services.mitzo.group: the group `${cfg.group}` is not declared in users.groups; declare it or leave services.mitzo.group at `mitzo`, which this module creates.";
      }
      {
        assertion = cfg.settings.ntfy == null || cfg.settings.public_url != null;
        message = "services.mitzo.settings.public_url: required when services.mitzo.settings.ntfy is set (notification actions call back to it).";
      }
      {
        assertion = lib.all repoNameOk (lib.attrNames cfg.settings.repos);
        message = "services.mitzo.settings.repos: repository names must be [A-Za-z0-9._-]+, not ${
          lib.concatMapStringsSep ", " builtins.toJSON (lib.filter (n: !repoNameOk n) (lib.attrNames cfg.settings.repos))
        }.";
      }
      {
        assertion = lib.all credentialNameOk (lib.attrNames cfg.credentials);
        message = "services.mitzo.credentials: credential names must be [A-Za-z0-9._@-]+, not ${
          lib.concatMapStringsSep ", " builtins.toJSON (
            lib.filter (n: !credentialNameOk n) (lib.attrNames cfg.credentials)
          )
        }.";
      }
      {
        assertion = !(lib.elem "/" cfg.settings.agent.extra_write_paths);
        message = "services.mitzo.settings.agent.extra_write_paths: `/` would defeat the agents' sandbox.";
      }
    ];

    # Per name, so that setting one credential keeps the others.
    services.mitzo.credentials = lib.mapAttrs (_: lib.mkDefault) defaultCredentials;

    services.mitzo.settings = {
      user = cfg.user;
      group = cfg.group;
      repos = cfg.repos;
      repo_path = lib.mkIf (lib.length (lib.attrValues cfg.settings.repos) == 1) (
        lib.mkDefault (lib.head (lib.attrValues cfg.settings.repos))
      );
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
      socketConfig.ListenStream = [ "" ] ++ cfg.settings.listen;
    };
    systemd.sockets.mitzod-unix = lib.mkIf cfg.unixSocket.enable {
      wantedBy = [ "sockets.target" ];
    };

    systemd.services.mitzod = {
      # Started by its socket; restarted when its configuration changes.
      restartTriggers = [ checkedConfigFile ];
      path = cfg.agent.extraPackages ++ lib.optional (cfg.agent.package != null) cfg.agent.package;
      environment = {
        MITZOD_CONFIG = "${checkedConfigFile}";
        # What the unit's STATE_DIRECTORY says; the config's state_dir wins
        # anyway, this keeps the two from disagreeing.
        STATE_DIRECTORY = stateDir;
      };
      # Delegate=yes and ProtectControlGroups=yes come from the package's
      # unit, as on Debian: nothing here changes them (see SECURITY.md on
      # what a read-only /sys/fs/cgroup means for per-session cgroups).
      serviceConfig = {
        # ProtectHome=tmpfs hides /home; ReadWritePaths= cannot reach beneath
        # it, BindPaths= can.
        BindPaths = writablePaths;
        BindReadOnlyPaths = readOnlyPaths;
        # The empty entry drops the unit's /var/lib/mitzo.
        ReadWritePaths = [
          ""
        ]
        ++ lib.optional (!underHiddenHome stateDir) stateDir;
        # The empty entry drops the unit's credential-store defaults.
        LoadCredential = [ "" ] ++ lib.mapAttrsToList (name: source: "${name}:${source}") loadedCredentials;
      }
      // lib.optionalAttrs ((cfg.settings.agent.network or "proxy") == "ports") {
        # Agents use the host's network: mitzod creates no namespaces, so the
        # unit's `RestrictNamespaces=user net` is narrowed to none.
        RestrictNamespaces = true;
      }
      // lib.optionalAttrs cfg.startAsUser {
        User = cfg.user;
        Group = cfg.group;
        # mitzod-user.conf's StateDirectory=mitzo is /var/lib/mitzo: follow
        # state_dir where StateDirectory= can name it, else leave it to
        # tmpfiles above.
        StateDirectory =
          if lib.hasPrefix "/var/lib/" stateDir then lib.removePrefix "/var/lib/" stateDir else "";
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall (
      lib.unique (map tcpPort (lib.filter (a: !isLoopback a) cfg.settings.listen))
    );
  };
}
