# Stub packages: real derivations (so `nix flake check` can type-check outputs and compute their
# .drv paths) whose builder fails, since nothing here may be built or run.
{ lib, system }:
let
  stub =
    name: extra:
    derivation (
      {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-c"
          "echo 'stub nixpkgs: ${name} cannot be built; use the real nixpkgs' >&2; exit 1"
        ];
      }
      // extra
    );

  # Fails evaluation when a builder gets an argument the real one would not accept.
  checkArgs =
    builder: allowed: args:
    let
      unknown = builtins.filter (n: !(builtins.elem n allowed)) (builtins.attrNames args);
    in
    if unknown != [ ] then
      throw "stub nixpkgs: ${builder} got unknown arguments ${builtins.toJSON unknown}"
    else if !(args ? pname && args ? version) then
      throw "stub nixpkgs: ${builder} needs pname and version"
    else
      args;

  checkDeps =
    what: deps:
    if builtins.all (d: d ? type && d.type == "derivation") deps then
      deps
    else
      throw "stub nixpkgs: ${what} has a dependency that is not a derivation";

  pythonBuilderArgs = [
    "pname"
    "version"
    "src"
    "pyproject"
    "build-system"
    "dependencies"
    "optional-dependencies"
    "pythonImportsCheck"
    "pythonRelaxDeps"
    "makeWrapperArgs"
    "passthru"
    "meta"
  ];

  buildPython =
    builder: args0:
    let
      args = checkArgs builder pythonBuilderArgs args0;
      deps = checkDeps args.pname ((args.dependencies or [ ]) ++ (args.build-system or [ ]));
      drv = stub "python3.12-${args.pname}-${args.version}" {
        src = args.src;
        deps = deps;
        makeWrapperArgs = args.makeWrapperArgs or [ ];
      };
    in
    drv // (args.passthru or { }) // { meta = args.meta or { }; };

  pythonPackage = name: stub "python3.12-${name}-stub" { };

  python312 =
    let
      self = stub "python3-3.12-stub" { };
    in
    self
    // {
      pkgs =
        lib.genAttrs [
          "av"
          "cyclopts"
          "filelock"
          "hatchling"
          "httpx"
          "huggingface-hub"
          "litestar"
          "msgspec"
          "numpy"
          "packaging"
          "rich"
          "soxr"
          "uv"
          "uvicorn"
          "websockets"
        ] pythonPackage
        // {
          buildPythonPackage = buildPython "buildPythonPackage";
          buildPythonApplication = buildPython "buildPythonApplication";
          # nixpkgs' pkgs/development/interpreters/python/editable.nix
          mkPythonEditablePackage =
            args0:
            let
              args = checkArgs "mkPythonEditablePackage" [
                "pname"
                "version"
                "root"
                "derivationArgs"
                "dependencies"
                "optional-dependencies"
                "build-system"
                "scripts"
                "gui-scripts"
                "entry-points"
                "passthru"
                "meta"
              ] args0;
            in
            stub "python3.12-${args.pname}-${args.version}-editable" {
              root = args.root;
              deps = checkDeps args.pname (args.dependencies or [ ]);
            };
        };
    };

  pkgs = {
    inherit lib python312;
    callPackage =
      fn: overrides:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);
    stdenv.cc.cc = stub "gcc-stub" { } // {
      lib = stub "gcc-stub-lib" { };
    };
    zlib = stub "zlib-stub" { };
    uv = stub "uv-stub" { };
    writeShellScript = name: text: stub name { inherit text; };
    mkShell =
      args:
      stub "nix-shell" {
        packages = args.packages or [ ];
        env = builtins.toJSON (args.env or { });
      };
  };
in
pkgs
