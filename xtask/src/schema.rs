//! Entities: the workload's `post` (its `category` table is only created), the stress test's `item`.

pub mod post {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "post")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub title: String,
        pub category_id: i32,
        pub author_id: i32,
        pub visible: bool,
        pub body: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod item {
    use sea_orm::entity::prelude::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "item")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub grp: i32,
        pub version: i64,
        pub payload: String,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

/// The workload's tables, created fresh (`WORKLOAD.md`, "Data").
pub const WORKLOAD_DDL: &str = "
DROP TABLE IF EXISTS post;
DROP TABLE IF EXISTS category;
CREATE TABLE category (id integer PRIMARY KEY, title varchar(128) NOT NULL);
CREATE TABLE post (id integer PRIMARY KEY, title varchar(128) NOT NULL,
    category_id integer NOT NULL REFERENCES category, author_id integer NOT NULL,
    visible boolean NOT NULL, body text NOT NULL);
INSERT INTO category (id, title) SELECT i, 'cat ' || i FROM generate_series(1, 100) AS i;
INSERT INTO post (id, title, category_id, author_id, visible, body)
    SELECT i + 1, 'post ' || (i + 1), i % 100 + 1, i % 500, i % 3 <> 0, repeat('x', 200)
    FROM generate_series(0, 9999) AS i;
ANALYZE category;
ANALYZE post;
";
