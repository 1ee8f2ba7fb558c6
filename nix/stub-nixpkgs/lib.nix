# The few nixpkgs lib functions Vox's flake uses, with nixpkgs' semantics.
{
  genAttrs =
    names: f:
    builtins.listToAttrs (
      map (name: {
        inherit name;
        value = f name;
      }) names
    );

  makeLibraryPath =
    packages: builtins.concatStringsSep ":" (map (p: "${p.lib or p.out or p}/lib") packages);

  licenses.asl20 = {
    shortName = "asl20";
    spdxId = "Apache-2.0";
    fullName = "Apache License 2.0";
    free = true;
  };
}
