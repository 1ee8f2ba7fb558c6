# The vox package, built from the uv workspace with nixpkgs' Python builders. Dependencies come
# from the pinned nixpkgs (not from uv.lock); adapter stacks are never part of it: `vox pull`
# installs them into per-adapter uv sandboxes under VOX_HOME at run time, as everywhere else.
{
  lib,
  python312,
  stdenv,
  zlib,
  src,
}:
let
  python = python312;
  ps = python.pkgs;
  version = "0.1.0";
  srcRoot = toString src;

  # protocol/ and runners/ as one store path. The control plane finds them next to each other
  # (sandboxes/src/vox_sandboxes/source.py) and installs copies of them into each adapter sandbox,
  # fingerprinted by content; an installed wheel would make it ask the index for vox-protocol.
  runnerSource = builtins.path {
    name = "vox-runner-source";
    path = src;
    filter =
      path: type:
      let
        rel = builtins.substring (builtins.stringLength srcRoot + 1) (-1) (toString path);
        top = builtins.head (builtins.split "/" rel);
        base = baseNameOf rel;
      in
      builtins.elem top [
        "protocol"
        "runners"
      ]
      && base != "__pycache__"
      && builtins.match ".*\\.py[co]" base == null
      && builtins.match "(protocol|runners)(/pyproject\\.toml|/src(/.*)?)?" rel != null;
  };

  # Editable (a .pth pointing into the store path above), so vox_protocol.__file__ lies in it.
  vox-protocol = ps.mkPythonEditablePackage {
    pname = "vox-protocol";
    inherit version;
    root = "${runnerSource}/protocol/src";
    dependencies = [ ps.msgspec ];
  };

  vox-runner = ps.mkPythonEditablePackage {
    pname = "vox-runner";
    inherit version;
    root = "${runnerSource}/runners/src";
    dependencies = [
      vox-protocol
      ps.msgspec
    ];
  };

  member =
    name: dependencies:
    ps.buildPythonPackage {
      pname = "vox-${name}";
      inherit version dependencies;
      pyproject = true;
      src = "${src}/${name}";
      build-system = [ ps.hatchling ];
      pythonImportsCheck = [ "vox_${name}" ];
    };

  vox-sandboxes = member "sandboxes" [
    ps.uv
    ps.filelock
    ps.packaging
  ];

  vox-control = member "control" [
    vox-protocol
    vox-sandboxes
    ps.litestar
    ps.uvicorn
    ps.msgspec
    ps.httpx
    ps.av
    ps.numpy
    ps.soxr
    ps.filelock
    ps.websockets
    ps.huggingface-hub
  ];

  runtimeLibraryPath = lib.makeLibraryPath [
    stdenv.cc.cc.lib
    zlib
  ];
in
ps.buildPythonApplication {
  pname = "vox";
  inherit version;
  pyproject = true;
  src = "${src}/cli";
  build-system = [ ps.hatchling ];
  dependencies = [
    vox-control
    vox-runner
    ps.cyclopts
    ps.httpx
    ps.rich
    ps.av
    ps.websockets
  ];
  makeWrapperArgs = [
    # Runners inherit this: PyPI wheels in sandboxes need libstdc++ and zlib, and on NixOS the
    # CUDA driver library lives in /run/opengl-driver/lib.
    "--prefix"
    "LD_LIBRARY_PATH"
    ":"
    "${runtimeLibraryPath}:/run/opengl-driver/lib"
    # Sandboxes use this package's Python; uv must never download another one.
    "--set-default"
    "UV_PYTHON_DOWNLOADS"
    "never"
  ];
  pythonImportsCheck = [ "vox_cli" ];
  passthru = {
    inherit python runtimeLibraryPath;
  };
  meta = {
    description = "Vox: a local runtime for speech-to-text and text-to-speech models";
    license = lib.licenses.asl20;
    mainProgram = "vox";
  };
}
