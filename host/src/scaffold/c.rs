//! Building a C plugin: bindings from the WIT with wit-bindgen's C
//! generator, a core module from clang and wasi-libc, then a component with
//! wit-component and the WASI preview 1 adapter. Only clang and a WASI
//! sysroot are needed beside `apiary`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

use super::CSources;

/// Where the generated bindings go, inside the project.
pub const GENERATED: &str = "gen";

/// Writes the C bindings of `world` in the WIT at `wit` into `<dir>/gen`:
/// `<world>.h`, `<world>.c` and the component-type object to link in.
pub fn bindings(dir: &Path, wit: &Path, world: &str) -> anyhow::Result<()> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("cannot read the WIT in {}", wit.display()))?;
    let world = resolve.select_world(&[package], Some(world))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    let out = dir.join(GENERATED);
    std::fs::create_dir_all(&out)?;
    for (name, contents) in files.iter() {
        std::fs::write(out.join(name), contents)
            .with_context(|| format!("cannot write {}", out.join(name).display()))?;
    }
    Ok(())
}

/// Compiles `<dir>/src/*.c` and the `extra` sources with the bindings
/// into the component `out`.
///
/// `CC` names the compiler (default `clang`) and `WASI_SYSROOT` the
/// wasi-libc sysroot (default `/usr`, where Debian's `wasi-libc` puts it;
/// wasi-sdk's is `share/wasi-sysroot`).
pub fn build(
    dir: &Path,
    wit: &Path,
    world: &str,
    extra: &CSources,
    out: &Path,
) -> anyhow::Result<()> {
    bindings(dir, wit, world)?;
    let generated = dir.join(GENERATED);
    let prefix = world.replace('-', "_");
    let mut sources = c_files(&dir.join("src"))?;
    for source in &extra.sources {
        let path = dir.join(source);
        if path.is_dir() {
            sources.extend(c_files(&path)?);
        } else if path.is_file() {
            sources.push(path);
        } else {
            anyhow::bail!("[c] sources: {} does not exist", path.display());
        }
    }
    sources.push(generated.join(format!("{prefix}.c")));
    sources.push(generated.join(format!("{prefix}_component_type.o")));

    let core = generated.join("core.wasm");
    let compiler = std::env::var_os("CC").unwrap_or_else(|| "clang".into());
    let sysroot = std::env::var_os("WASI_SYSROOT").unwrap_or_else(|| "/usr".into());
    let mut compile = Command::new(&compiler);
    compile
        .args([
            "--target=wasm32-wasi",
            "-O2",
            "-mexec-model=reactor",
            "-Wall",
        ])
        .arg("--sysroot")
        .arg(&sysroot)
        .arg("-I")
        .arg(&generated)
        .arg("-I")
        .arg(dir.join("src"));
    for include in &extra.include {
        compile.arg("-I").arg(dir.join(include));
    }
    compile.arg("-o").arg(&core).args(&sources);
    super::run(&mut compile).context(
        "a C plugin needs clang and wasi-libc (Debian: `apt install clang lld wasi-libc \
         libclang-rt-14-dev-wasm32`; or set CC and WASI_SYSROOT to a wasi-sdk)",
    )?;
    let module = std::fs::read(&core)?;
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
        .with_context(|| format!("cannot make a component of {}", core.display()))?;
    std::fs::write(out, component).with_context(|| format!("cannot write {}", out.display()))
}

/// The `.c` files of `dir`, in name order.
fn c_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "c"))
        .collect();
    files.sort();
    Ok(files)
}
