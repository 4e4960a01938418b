//! Reading one struct's share of a configuration that several structs share.
//!
//! `valet serve` reads one flat namespace of settings, but its settings are declared where
//! they are used: the gate's in [`valet_gate::GateConfig`], the server's and the store's in
//! [`super::ServerSettings`]. Each struct keeps `deny_unknown_fields` (a typo in a table is
//! still named with the keys it could have been); [`Known`] hands a struct only the top-level
//! keys it declares, and [`fields_of`] tells which those are, from the struct's own
//! `Deserialize` (no second list to keep in step). A key no struct declares is refused by the
//! caller, naming every struct's keys.
//!
//! Values are still read by the configuration's own deserializer, so an error keeps its key
//! path and the layer it came from.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, Visitor,
};
use serde::Deserialize;

/// The top-level field names of a struct deriving `Deserialize`, as its derive passes them to
/// `deserialize_struct` (skipped fields excluded, renames applied).
pub fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The probe refuses to produce anything: only the names it was asked for matter.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

struct Probe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only a struct's field names are probed"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// `T`, read from a map of which it declares only some keys: the others are skipped.
#[derive(Debug)]
pub struct Known<T>(pub T);

impl<'de, T: for<'a> Deserialize<'a>> Deserialize<'de> for Known<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fields = fields_of::<T>();
        T::deserialize(KnownKeys { inner: d, fields }).map(Known)
    }
}

struct KnownKeys<D> {
    inner: D,
    fields: &'static [&'static str],
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KnownKeys<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = KnownVisitor {
            visitor,
            fields: self.fields,
            marker: PhantomData,
        };
        self.inner.deserialize_struct(name, fields, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

struct KnownVisitor<'de, V> {
    visitor: V,
    fields: &'static [&'static str],
    marker: PhantomData<&'de ()>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for KnownVisitor<'de, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(KnownMap {
            map,
            fields: self.fields,
        })
    }
}

struct KnownMap<A> {
    map: A,
    fields: &'static [&'static str],
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for KnownMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<String>()? {
            if self.fields.contains(&key.as_str()) {
                return seed.deserialize(key.into_deserializer()).map(Some);
            }
            self.map.next_value::<IgnoredAny>()?;
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Part {
        a: u32,
        #[serde(default)]
        b: Option<String>,
        #[serde(skip)]
        _hidden: bool,
    }

    #[test]
    fn a_struct_names_its_own_fields() {
        assert_eq!(fields_of::<Part>(), ["a", "b"]);
    }

    #[test]
    fn a_struct_reads_its_keys_and_skips_the_others() {
        let json = r#"{"other": {"x": 1}, "a": 7, "b": "y", "more": [1]}"#;
        let Known(part) = serde_json::from_str::<Known<Part>>(json).unwrap();
        assert_eq!(part.a, 7);
        assert_eq!(part.b.as_deref(), Some("y"));
        let err = serde_json::from_str::<Known<Part>>(r#"{"a": "seven"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
