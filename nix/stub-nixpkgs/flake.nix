# An offline stand-in for nixpkgs, for CI only: `nix flake check --no-build --override-input
# nixpkgs path:./nix/stub-nixpkgs` evaluates Vox's real flake against it without downloading
# nixpkgs. It provides exactly the attributes flake.nix and nix/package.nix use, as derivations
# that refuse to build, and rejects arguments the real builders would not know.
{
  description = "Offline stub of the nixpkgs attributes used by Vox's flake (evaluation only)";

  outputs =
    { self }:
    let
      lib = import ./lib.nix;
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
        system: import ./pkgs.nix { inherit lib system; }
      );
    };
}
