//! A WASI command: a real component, but of the `wasi:cli/command` world,
//! which Apiary must reject as matching none of its worlds.

fn main() {
    println!("not an Apiary plugin");
}
