{
  description = "Vox: a local runtime for speech-to-text and text-to-speech models";

  # Pin with `nix flake lock` (flake.lock records the exact nixpkgs revision and hash).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
    let
      # NVIDIA GPUs are the deployment target; the CPU path works on the same systems.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      voxFor = pkgs: pkgs.callPackage ./nix/package.nix { src = self; };
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          vox = voxFor pkgs;
        in
        {
          inherit vox;
          default = vox;
        }
      );

      # `nix run` starts the server; `nix run .#vox -- pull whisper:tiny.en` is the whole CLI.
      apps = forAllSystems (
        pkgs:
        let
          vox = voxFor pkgs;
          serve = pkgs.writeShellScript "vox-serve" ''exec ${vox}/bin/vox serve "$@"'';
        in
        {
          default = {
            type = "app";
            program = "${serve}";
          };
          vox = {
            type = "app";
            program = "${vox}/bin/vox";
          };
        }
      );

      # `nix develop`: uv and the Python the package uses; `uv sync` then builds .venv as usual.
      devShells = forAllSystems (
        pkgs:
        let
          vox = voxFor pkgs;
        in
        {
          default = pkgs.mkShell {
            packages = [
              vox.python
              pkgs.uv
            ];
            env = {
              UV_PYTHON = "${vox.python}/bin/python3";
              UV_PYTHON_DOWNLOADS = "never";
              # PyPI wheels in adapter sandboxes (onnxruntime, ctranslate2) link libstdc++ and
              # zlib, which a Nix Python does not find on its own.
              LD_LIBRARY_PATH = vox.runtimeLibraryPath;
            };
          };
        }
      );

      checks = forAllSystems (pkgs: {
        vox = voxFor pkgs;
      });
    };
}
