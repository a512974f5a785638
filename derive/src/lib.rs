//! `#[derive(Persistent)]` for durus: makes a serde type storable by giving it a stable
//! type name.
//!
//! ```ignore
//! #[derive(Clone, serde::Serialize, serde::Deserialize, durus::Persistent)]
//! #[durus(name = "bank.Account")] // optional; the default is the type's own name
//! struct Account { balance: i64 }
//! ```

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, DeriveInput, LitStr};

/// Implements `durus::object::Persistent` with the type name given by
/// `#[durus(name = "...")]`, or the type's identifier when there is none.
#[proc_macro_derive(Persistent, attributes(durus))]
pub fn derive_persistent(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let ident = &input.ident;
    let mut name = ident.to_string();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("durus")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() || lit.value().len() > 255 {
                    return Err(meta.error("a durus type name is 1 to 255 bytes long"));
                }
                name = lit.value();
                Ok(())
            } else {
                Err(meta.error("expected `name = \"...\"`"))
            }
        })?;
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::durus::object::Persistent for #ident #ty_generics #where_clause {
            const TYPE_NAME: &'static str = #name;
        }
    })
}
